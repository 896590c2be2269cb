#!/usr/bin/env python
"""Run Django's management commands for the example project."""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    # Work from a plain checkout too: fall back to the django_sessionkit beside this folder.
    if find_spec("django_sessionkit") is None:
        sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
