"""The version is written once, in pyproject.toml; the package and the docs read it."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version_in(path: Path, *options: str) -> str:
    """Return ``django_sessionkit.__version__`` as a new interpreter imports it from *path*."""
    code = f"import sys; sys.path[:0] = {[str(path), str(ROOT)]!r}; import django_sessionkit; "
    code += "print(django_sessionkit.__version__)"
    result = subprocess.run(
        [sys.executable, *options, "-c", code],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_the_package_reports_the_version_of_its_metadata(tmp_path):
    # Metadata that says another version, found first on the path, as an install's is.
    metadata = tmp_path / "django_sessionkit-9.8.7.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: django-sessionkit\nVersion: 9.8.7\n"
    )

    assert version_in(tmp_path) == "9.8.7"


def test_a_copy_that_was_never_installed_imports_with_an_unknown_version(tmp_path):
    # -S: no site-packages, so no metadata at all; -I: no PYTHONPATH from tox.
    assert version_in(tmp_path, "-I", "-S") == "0+unknown"


def test_the_docs_read_the_version_from_pyproject(tmp_path):
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "conf.py", tmp_path / "docs" / "conf.py")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "9.8.7"\n')

    conf = runpy.run_path(str(tmp_path / "docs" / "conf.py"))

    assert (conf["version"], conf["release"]) == ("9.8.7", "9.8.7")
    assert "django_sessionkit" not in conf  # nor does it import the package
