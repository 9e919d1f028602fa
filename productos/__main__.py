"""Run the command line as ``python -m productos``."""

import sys

from productos.cli import main

sys.exit(main())
