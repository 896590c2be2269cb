"""See and manage Django sessions on every session engine."""

from __future__ import annotations

__version__ = "0.1.0"
