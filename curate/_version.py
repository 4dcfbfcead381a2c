"""The installed distribution's version (a module of its own: every part of curate can read it
without importing the package's lazy API)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("curate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
