"""Django REST framework views for the DRF exception handler tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import APIView


class ServiceDown(APIException):
    """A handled error DRF answers with 503."""

    status_code = 503
    default_detail = "the payment provider is down"


class TokenAuth(BaseAuthentication):
    """``Authorization: Token <username>``: the kind of auth Django's middleware cannot see."""

    def authenticate(self, request: Any) -> Any:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Token "):
            return None
        user = get_user_model().objects.get(username=header[len("Token ") :])
        return (user, None)


class Down(APIView):
    authentication_classes = [TokenAuth]

    def get(self, request: Any) -> Any:
        raise ServiceDown()


class Invalid(APIView):
    def get(self, request: Any) -> Any:
        raise ValidationError({"quantity": "must be positive"})


class Crash(APIView):
    def get(self, request: Any) -> Any:
        raise RuntimeError("drf view crashed")
