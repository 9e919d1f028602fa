"""ASGI entry point: ``uvicorn django_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application  # noqa: TID251 - a Django site under test

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
application = get_asgi_application()
