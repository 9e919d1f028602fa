"""Framework integrations; each submodule imports its framework only when it is imported."""

from productos.integrations._common import IntegrationNotAvailable, RequestClient

__all__ = ["IntegrationNotAvailable", "RequestClient"]
