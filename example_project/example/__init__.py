"""The example project: the "Sessions in Django" tutorial's blog, run on django_sessionkit."""

from __future__ import annotations
