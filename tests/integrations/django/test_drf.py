"""The Django REST framework exception handler: handled 5xx are captured, 4xx are not."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

pytest.importorskip("django")
pytest.importorskip("rest_framework")

from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from productos.integrations import drf

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def configure(recording: Any) -> Iterator[Callable[..., None]]:
    active: List[Any] = []

    def apply(**config: Any) -> None:
        config.setdefault("CLIENT", recording.client)
        override = override_settings(PRODUCTOS=config)
        override.enable()
        active.append(override)

    yield apply
    for override in reversed(active):
        override.disable()


@pytest.fixture
def bob() -> Any:
    model = get_user_model()
    return model.objects.filter(username="bob").first() or model.objects.create_user("bob")


def test_handled_5xx_is_captured_with_the_drf_user(configure: Any, recording: Any,
                                                   bob: Any) -> None:
    configure()
    response = Client().get("/api/down/", headers={"Authorization": "Token bob",
                                                   "X-POSTHOG-SESSION-ID": "s-1"})
    assert response.status_code == 503
    assert response.json() == {"detail": "the payment provider is down"}
    (event,) = recording.events("$exception")
    assert event["distinct_id"] == str(bob.pk)  # DRF's token user, unseen by the middleware
    p = event["properties"]
    assert p["$session_id"] == "s-1"
    assert p["$request_path"] == "/api/down/"
    (entry,) = p["$exception_list"]
    assert entry["type"] == "ServiceDown"
    assert entry["module"].endswith("project.drf_views")
    assert entry["mechanism"] == {"type": "drf", "handled": True, "synthetic": False}


def test_header_identity_wins_in_drf_too(configure: Any, recording: Any, bob: Any) -> None:
    configure()
    Client().get("/api/down/", headers={"Authorization": "Token bob",
                                        "X-POSTHOG-DISTINCT-ID": "front-1"})
    (event,) = recording.events("$exception")
    assert event["distinct_id"] == "front-1"


def test_client_errors_are_not_captured(configure: Any, recording: Any) -> None:
    configure()
    response = Client().get("/api/invalid/")
    assert response.status_code == 400
    assert recording.events("$exception") == []


def test_unhandled_error_in_a_drf_view_is_captured_once(configure: Any, recording: Any) -> None:
    configure()
    response = Client(raise_request_exception=False).get("/api/crash/")
    assert response.status_code == 500
    (event,) = recording.events("$exception")
    (entry,) = event["properties"]["$exception_list"]
    assert entry["value"] == "drf view crashed"
    assert entry["mechanism"]["type"] == "django"  # DRF re-raised it; the middleware caught it


def test_wrapping_a_custom_handler(configure: Any, recording: Any) -> None:
    from rest_framework.response import Response

    def answer_500(exc: Exception, context: Any) -> Any:
        return Response({"error": str(exc)}, status=500)

    configure()
    handler = drf.make_exception_handler(answer_500)
    with override_settings(REST_FRAMEWORK={"EXCEPTION_HANDLER": handler,
                                           "DEFAULT_AUTHENTICATION_CLASSES": [],
                                           "DEFAULT_PERMISSION_CLASSES": [],
                                           "UNAUTHENTICATED_USER": None}):
        response = Client().get("/api/crash/")
    assert response.status_code == 500
    assert response.json() == {"error": "drf view crashed"}
    (event,) = recording.events("$exception")
    assert event["properties"]["$exception_list"][0]["mechanism"]["type"] == "drf"


def test_handler_works_when_productos_is_off(configure: Any, recording: Any) -> None:
    configure(ENABLED=False)
    assert Client().get("/api/invalid/").status_code == 400
    assert recording.events() == []
