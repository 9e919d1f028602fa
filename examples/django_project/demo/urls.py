"""URLs of the productos Django example."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("live/", views.live),
    path("boom/", views.boom),
    path("health/", views.health),
]
