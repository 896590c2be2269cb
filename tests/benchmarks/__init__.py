"""Benchmark scripts: stock Django and django_sessionkit on the same data, in one run.

They are run by hand (``python -m tests.benchmarks.engines``), print figures
and ratios, and are never collected by pytest: no module here is named
``test_*.py``.
"""

from __future__ import annotations
