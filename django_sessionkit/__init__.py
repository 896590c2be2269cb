"""See and manage Django sessions on every session engine."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# The version is written once, in pyproject.toml; an installed package carries it
# in its metadata.
try:
    __version__ = version("django-sessionkit")
except PackageNotFoundError:  # a copy of the package that was never installed
    __version__ = "0+unknown"
