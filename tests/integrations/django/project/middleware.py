"""A middleware below productos' that fails on one path: errors outside views get captured too."""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class ExplodingMiddleware:
    """Raises for /explode-in-middleware/; passes every other request through."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        self._check(request)
        return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        self._check(request)
        return await self.get_response(request)

    @staticmethod
    def _check(request: Any) -> None:
        if request.path == "/explode-in-middleware/":
            raise RuntimeError("middleware exploded")
