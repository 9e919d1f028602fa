"""The ``productos`` command line (a fuller CLI arrives with the CLI issue)."""

from __future__ import annotations

import argparse
from typing import List, Optional

from productos.version import VERSION


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="productos", description="productos command line")
    parser.add_argument("--version", action="version", version=f"productos {VERSION}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
