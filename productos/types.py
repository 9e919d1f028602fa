"""Types for code that uses productos: JSON values (flag payloads) and exception arguments."""

from __future__ import annotations

from types import TracebackType
from typing import Dict, List, Optional, Tuple, Type, Union

# A JSON value as json.loads returns it: what a flag payload is once decoded.
JSON = Union[None, bool, int, float, str, List["JSON"], Dict[str, "JSON"]]

# sys.exc_info()'s result (all None outside an ``except`` block).
ExcInfo = Tuple[Optional[Type[BaseException]], Optional[BaseException], Optional[TracebackType]]

# What capture_exception() takes: an exception, an exc_info tuple, or None (the one handled).
ExceptionArg = Union[BaseException, ExcInfo, None]

# The aliases are documented where help() and the docs tools look.
JSON.__doc__ = "A JSON value as json.loads returns it (a decoded flag payload)."
ExcInfo.__doc__ = "sys.exc_info()'s result: (type, exception, traceback), or three Nones."
ExceptionArg.__doc__ = ("What capture_exception() takes: an exception, an exc_info tuple, or "
                        "None for the exception being handled.")

__all__ = ["JSON", "ExcInfo", "ExceptionArg"]
