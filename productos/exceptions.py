"""Building ``$exception`` events from Python exceptions (protocol §6). (Being written.)"""

from __future__ import annotations

from typing import Any, Dict, Optional


def exception_properties(exc: BaseException, *, level: str = "error", handled: bool = True,
                         mechanism_type: str = "generic",
                         project_root: Optional[str] = None) -> Dict[str, Any]:
    """Return the ``$exception`` properties for exc."""
    return {"$exception_list": [{"type": type(exc).__name__, "value": str(exc)}],
            "$exception_level": level}


def already_captured(exc: BaseException) -> bool:
    """Tell whether this exception object was captured before."""
    return bool(getattr(exc, "__productos_captured__", False))


def mark_captured(exc: BaseException) -> None:
    """Remember that this exception object was captured."""
    try:
        exc.__productos_captured__ = True  # type: ignore[attr-defined]
    except Exception:
        pass


def install_autocapture(client: Any) -> Any:
    """Chain sys.excepthook and threading.excepthook to capture uncaught exceptions."""
    return None
