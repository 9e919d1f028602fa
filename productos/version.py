"""The package version, kept alone so setup.py can read it without importing productos."""

VERSION = "0.1.0"
