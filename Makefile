# Everything runs from a local virtualenv in .venv; nothing is installed globally.
PYTHON ?= python3
# The example project's port: make run PORT=8001
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
MANAGE := cd example_project && ../$(BIN)/python manage.py
DOCS_OUT := docs/_build/html

.PHONY: help install run test browser coverage tox lint docs clean

help:
	@echo "make run      set up and start the example project at http://127.0.0.1:$(PORT)/ (PORT=8001 for another port)"
	@echo "make test     set up and run the whole test suite"
	@echo "make browser  run the browser tests (Playwright on the system Chromium)"
	@echo "make docs     build the documentation into $(DOCS_OUT)"
	@echo "make lint     every pre-commit hook over the whole repository (ruff, django-upgrade, pyproject-fmt, mypy)"
	@echo "make coverage run the tests on SQLite and PostgreSQL under coverage; fail below the floor"
	@echo "make tox      run every tox environment (Pythons 3.10-3.13, PostgreSQL, coverage, lint, types, docs, packaging)"
	@echo "make clean    remove the virtualenv, tox's environments, build and coverage output, the SQLite databases"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

$(VENV)/.docs-installed: docs/requirements.txt $(BIN)/python
	$(BIN)/python -m pip install --quiet -r docs/requirements.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_superuser --port $(PORT)
	$(MANAGE) runserver 127.0.0.1:$(PORT)

test: install
	$(BIN)/python -m pytest -W error::DeprecationWarning

browser: install
	$(BIN)/python -m pip install --quiet "playwright>=1.49"
	$(BIN)/python -m pytest -W error::DeprecationWarning -p no:randomly -m browser tests/browser

# The docs import the package from the checkout (docs/conf.py), so they need
# only their own requirements, and no network: the intersphinx inventories are
# local files.
docs: $(VENV)/.docs-installed
	$(BIN)/python -m sphinx -W --keep-going -n -b html docs $(DOCS_OUT)
	@echo "Open $(DOCS_OUT)/index.html"

# The tox environments that CI combines into one coverage figure.
coverage: install
	$(BIN)/tox run -e py313-django61,postgres,coverage

tox: install
	$(BIN)/tox run-parallel --parallel auto --parallel-no-spinner

lint: install
	$(BIN)/pre-commit run --all-files

clean:
	rm -rf $(VENV) .tox build dist docs/_build htmlcov tests/test.sqlite3 example_project/db.sqlite3
