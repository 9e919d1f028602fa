"""Settings of the productos Django example: the PRODUCTOS dict is the part to copy."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "productos.integrations.django.ProductosConfig",  # builds the client at startup
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "productos.integrations.django.ProductosMiddleware",  # after auth: it reads request.user
]
ROOT_URLCONF = "demo.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": BASE_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

PRODUCTOS = {
    "API_KEY": os.environ.get("PRODUCTOS_API_KEY"),  # None: the client stays off
    "HOST": os.environ.get("PRODUCTOS_HOST"),
    "PERSONAL_API_KEY": os.environ.get("PRODUCTOS_PERSONAL_API_KEY"),
    "OPTIONS": {"flush_interval": 0.5},
    "REQUEST_FILTER": lambda request: request.path != "/health/",
    "EXTRA_PROPERTIES": lambda request: {"app": "django-example"},
}
