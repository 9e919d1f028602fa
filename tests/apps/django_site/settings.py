"""Settings: ProductosConfig, the middleware after auth, and a PRODUCTOS dict, nothing more."""

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "productos.integrations.django.ProductosConfig",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "productos.integrations.django.ProductosMiddleware",
]
ROOT_URLCONF = "django_site.urls"
DATABASES = {}  # no view touches the database
USE_TZ = True

PRODUCTOS = {
    "API_KEY": "phc_sigterm",
    "HOST": os.environ["SINK_URL"],
    # Events stay queued until the process ends: only the exit drain can deliver them.
    "OPTIONS": {"flush_interval": 60, "flush_at": 100_000},
}
