"""Install the built wheel into a fresh virtualenv and check what it ships.

Usage: python tests/packaging/check_wheel.py DIST_DIR

The check runs in the new environment, from a temporary directory, so the
checkout cannot be imported by accident.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

CHECK = r"""
import pathlib, sys
import django_sessionkit
root = pathlib.Path(django_sessionkit.__file__).parent
assert "site-packages" in str(root), f"imported from the checkout: {root}"
expected = [
    "py.typed",
    "templates/django_sessionkit/base.html",
    "static/django_sessionkit/sessionkit.css",
    "locale/fr/LC_MESSAGES/django.po",
    "locale/fr/LC_MESSAGES/django.mo",
    "migrations/__init__.py",
]
# The redis engine's scripts are package resources, read when it is imported.
lua = ["lib", "save", "delete", "touch", "prune", "sweep", "user", "count", "estimate",
       "page", "chunk", "idle", "delete_idle"]
expected += [f"backends/redis/lua/{name}.lua" for name in lua]
missing = [name for name in expected if not (root / name).is_file()]
assert not missing, f"missing from the wheel: {missing}"
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["django_sessionkit", "django.contrib.contenttypes",
                   "django.contrib.auth", "django.contrib.sessions"])
django.setup()
from django.core import checks
assert checks.run_checks() == [], checks.run_checks()
print(f"ok: django_sessionkit {django_sessionkit.__version__} from {root}")
"""


def main(dist: Path) -> None:
    [wheel] = sorted(dist.glob("django_sessionkit-*.whl"))
    with tempfile.TemporaryDirectory() as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
        subprocess.run([python, "-c", CHECK], check=True, cwd=tmp)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
