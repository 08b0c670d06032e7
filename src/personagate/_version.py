"""The installed package's version, from its metadata (no import of the package itself)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("personagate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
