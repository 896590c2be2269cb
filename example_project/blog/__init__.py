"""The tutorial's blog app, reduced to its session demos."""

from __future__ import annotations
