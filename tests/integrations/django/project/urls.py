"""URLs of the Django test project."""

from __future__ import annotations

from django.urls import path

from . import views
from .settings import HAS_DRF

urlpatterns = [
    path("hello/", views.hello),
    path("hello-async/", views.hello_async),
    path("context/", views.context),
    path("context-async/", views.context_async),
    path("boom/", views.boom),
    path("boom-async/", views.boom_async),
    path("missing/", views.missing),
    path("flags/", views.flags),
    path("signup/", views.capture_as_request),
    path("explode-in-middleware/", views.hello),
]

if HAS_DRF:
    from . import drf_views

    urlpatterns += [
        path("api/down/", drf_views.Down.as_view()),
        path("api/invalid/", drf_views.Invalid.as_view()),
        path("api/crash/", drf_views.Crash.as_view()),
    ]
