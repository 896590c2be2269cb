"""Sphinx configuration for the django-sessionkit documentation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Sphinx depends on tomli before Python 3.11
    import tomli as tomllib

# The version is written once, in pyproject.toml: read it from there, so that the
# docs build without importing, or even installing, the package.
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
with PYPROJECT.open("rb") as file:
    version = tomllib.load(file)["project"]["version"]

project = "django-sessionkit"
author = "django-sessionkit contributors"
copyright = "django-sessionkit contributors"
release = version

extensions = [
    "myst_parser",
    "sphinx.ext.intersphinx",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_intersphinx", "Thumbs.db", ".DS_Store"]

# Every reference must resolve: the build runs with -n and -W.
nitpicky = True

# The inventories are local files (see _intersphinx/make_inventory.py) and the
# only source: with no upstream fallback, a build never touches the network, and
# a missing or broken inventory fails it (-W) instead of being fetched.
intersphinx_mapping = {
    "django": ("https://docs.djangoproject.com/en/stable/", "_intersphinx/django.inv"),
    "python": ("https://docs.python.org/3/", "_intersphinx/python.inv"),
}

html_theme = "furo"
html_title = f"django-sessionkit {release}"
html_static_path: list[str] = []


def setup(app: Any) -> None:
    # The same roles as Django's own docs, so :setting: and :djadmin: reach
    # Django's pages through intersphinx and our own definitions alike.
    app.add_crossref_type(
        directivename="setting",
        rolename="setting",
        indextemplate="pair: %s; setting",
    )
    app.add_crossref_type(
        directivename="templatetag",
        rolename="ttag",
        indextemplate="pair: %s; template tag",
    )
    app.add_object_type(
        directivename="django-admin",
        rolename="djadmin",
        indextemplate="pair: %s; django-admin command",
    )
    app.add_crossref_type(
        directivename="check",
        rolename="check",
        indextemplate="pair: %s; system check",
    )
