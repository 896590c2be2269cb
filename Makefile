# Everything runs from a local virtualenv in .venv; nothing is installed globally.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := cd example_project && ../$(BIN)/python manage.py

.PHONY: help install run test browser tox lint docs clean

help:
	@echo "make run    set up and start the example project at http://127.0.0.1:8000"
	@echo "make test   set up and run the whole test suite"
	@echo "make browser  run the browser tests (Playwright on the system Chromium)"
	@echo "make tox    run every tox environment (Pythons 3.10-3.13, PostgreSQL, lint, types, docs, packaging)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

install: $(VENV)/.installed

run: install
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_superuser
	$(MANAGE) runserver 127.0.0.1:8000

test: install
	$(BIN)/python -m pytest -W error::DeprecationWarning

browser: install
	$(BIN)/python -m pip install --quiet "playwright>=1.49"
	$(BIN)/python -m pytest -W error::DeprecationWarning -p no:randomly -m browser tests/browser

tox: install
	$(BIN)/tox run-parallel --parallel auto --parallel-no-spinner

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .tox build dist docs/_build tests/test.sqlite3 example_project/db.sqlite3
