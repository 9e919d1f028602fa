"""Exception types raised (in debug mode) or reported (through ``on_error``) by productos.

The tree::

    ProductosError
    ├── ConfigurationError (also a ValueError)  invalid options at construction
    ├── EventError (also a ValueError)          an event that cannot be built or sent
    │   ├── EventTooLargeError                  one event over the per-event size limit
    │   └── UnserializableEventError            nothing JSON-safe could be made of it
    ├── QueueFullError                          the buffer refused an event
    ├── SpoolFullError                          the spool evicted its oldest events
    ├── ClientShutdownError                     a call after shutdown()
    ├── ShutdownTimeoutError (also a TimeoutError)  shutdown's time ran out before a send
    └── TransportError                          anything that went wrong talking HTTP
        ├── ConnectError                        could not connect (DNS, refused, reset)
        ├── RequestTimeoutError                 no answer within the request timeout
        └── APIError                            the server answered with a non-200 status
            ├── RateLimitedError                429
            └── AuthenticationError             401 / 403 (a key is wrong)

Messages never contain an API key.
"""

from __future__ import annotations

from typing import Optional


class ProductosError(Exception):
    """Base class of every error productos raises or reports."""


class ConfigurationError(ProductosError, ValueError):
    """An option given to the client is invalid."""


class EventError(ProductosError, ValueError):
    """An event could not be built from the arguments given."""


class EventTooLargeError(EventError):
    """One serialised event is larger than the per-event limit."""


class UnserializableEventError(EventError):
    """An event could not be turned into JSON."""


class QueueFullError(ProductosError):
    """The in-memory buffer was full, so the event was not admitted."""


class SpoolFullError(ProductosError):
    """The spool reached ``spool_max_bytes``, so its oldest events were evicted."""


class ClientShutdownError(ProductosError):
    """The client was already shut down when the call was made."""


class ShutdownTimeoutError(ProductosError, TimeoutError):
    """Events were still waiting when shutdown's time ran out.

    Also the built-in ``TimeoutError``, which is what ``on_error`` received before this
    type existed.
    """


class TransportError(ProductosError):
    """A request to the server failed."""

    retryable: bool = True


class ConnectError(TransportError):
    """The connection could not be made or was dropped."""


class RequestTimeoutError(TransportError):
    """The server did not answer within the request timeout."""


class APIError(TransportError):
    """The server answered with a status other than 200."""

    def __init__(
        self, status: int, message: str = "", retry_after: Optional[float] = None
    ) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.retryable = status in (408, 429) or status >= 500
        text = f"HTTP {status}"
        if message:
            text += f": {message}"
        super().__init__(text)


class RateLimitedError(APIError):
    """The server answered 429: too many requests."""


class AuthenticationError(APIError):
    """The server refused a key (401 or 403)."""
