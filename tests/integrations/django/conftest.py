"""Configures Django once for these tests, from the small project in ./project."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

try:
    import django
except ImportError:  # the test modules skip themselves
    django = None

if django is not None:
    from django.conf import settings

    if not settings.configured:
        from .project import settings as project_settings

        settings.configure(
            **{
                name: getattr(project_settings, name)
                for name in dir(project_settings)
                if name.isupper()
            }
        )
        django.setup()


@pytest.fixture(scope="session", autouse=True)
def django_database() -> Iterator[None]:
    """Create the auth and session tables once; remove the database file afterwards."""
    if django is None:
        yield
        return
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    yield
    name = settings.DATABASES["default"]["NAME"]
    try:
        os.remove(name)
        os.rmdir(os.path.dirname(name))
    except OSError:
        pass
