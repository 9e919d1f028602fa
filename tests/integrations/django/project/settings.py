"""Settings of the small Django project the integration tests serve requests from."""

from __future__ import annotations

import importlib.util
import os
import tempfile

PACKAGE = __name__.rsplit(".", 1)[0]  # where this test project was imported from
HAS_DRF = importlib.util.find_spec("rest_framework") is not None

SECRET_KEY = "productos-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "productos.integrations.django.ProductosConfig",
    *(["rest_framework"] if HAS_DRF else []),
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "productos.integrations.django.ProductosMiddleware",
    f"{PACKAGE}.middleware.ExplodingMiddleware",
]
ROOT_URLCONF = f"{PACKAGE}.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A file, not :memory:, so the threads async views run on share one database.
        "NAME": os.path.join(tempfile.mkdtemp(prefix="productos-django-"), "db.sqlite3"),
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PRODUCTOS = {"ENABLED": False}  # each test configures its own client
REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "productos.integrations.drf.exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
