"""The README's promises: its developer commands, and its path into a fresh project."""

from __future__ import annotations

import ast
import configparser
import http.cookiejar
import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import django_sessionkit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def make_dry_run(*args: str) -> str:
    """Return the commands ``make *args*`` would run in the checkout, without running them."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("The README's commands need make on PATH.")
    result = subprocess.run(
        [make, "--dry-run", "--always-make", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# Developer commands


def test_make_run_serves_the_port_it_is_given():
    assert "make run PORT=8001" in README.read_text()
    commands = make_dry_run("run", "PORT=8001")
    assert "manage.py demo_superuser --port 8001" in commands
    assert "manage.py runserver 127.0.0.1:8001" in commands
    assert "8000" not in commands


def test_make_run_defaults_to_port_8000():
    assert "manage.py runserver 127.0.0.1:8000" in make_dry_run("run")


def test_make_docs_builds_the_docs_as_tox_does():
    commands = make_dry_run("docs")
    assert "pip install --quiet -r docs/requirements.txt" in commands
    assert "-m sphinx -W --keep-going -n -b html docs docs/_build/html" in commands


def test_tox_docs_needs_no_interpreter_download_and_no_wheel():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    docs = tox["testenv:docs"]
    # A pinned interpreter that is not installed is one tox-uv would download.
    assert "base_python" not in docs
    assert docs["uv_python_preference"] == "only-system"
    # The docs are built from the checkout's sources: building and installing a wheel
    # fetches its build backend and its dependencies for nothing.
    assert docs["skip_install"] == "true"


def test_docs_read_their_intersphinx_inventories_from_the_checkout_only():
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert conf["intersphinx_mapping"]
    for target, location in conf["intersphinx_mapping"].values():
        assert target.startswith("https://")
        # One local file, no upstream fallback (None or a URL) that a build would fetch.
        assert isinstance(location, str)
        assert (ROOT / "docs" / location).is_file()


# "Add it to your project": the README's snippets, applied to a fresh startproject

SECTION = "## Add it to your project"
FENCE = re.compile(r"^```([\w+-]+)\n(.*?)^```\n", re.M | re.S)
PATH = r"`([\w./-]+\.(?:py|html))`"
# What the paragraph before a snippet says to do with it, and to which file.
INSTRUCTIONS = [
    ("assignments", re.compile(rf"In {PATH}, replace ((?:`\w+`(?:,| and| )*)+) with:$")),
    ("append", re.compile(rf"add to the end of {PATH}:$", re.I)),
    ("replace", re.compile(rf"Replace {PATH} with:$")),
    ("create", re.compile(rf"Create {PATH}(?:,[^:]*)?:$")),
]
USERNAME = "admin"
PASSWORD = "readme-pass-8317"
UA = {
    "desktop": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "laptop": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "phone": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
}
DEVICES = {"desktop": "Chrome 131 on Linux", "laptop": "Firefox 133", "phone": "Mobile Safari 18"}


@dataclass
class Snippet:
    language: str
    code: str
    instruction: str  # the paragraph before it

    def target(self) -> tuple[str, str, list[str]]:
        """Return what to do (an INSTRUCTIONS name), the file, and the names to replace."""
        for action, pattern in INSTRUCTIONS:
            found = pattern.search(self.instruction)
            if found:
                names = re.findall(r"`(\w+)`", found[2]) if action == "assignments" else []
                return action, found[1], names
        pytest.fail(f"The README does not say where this snippet goes:\n{self.instruction}")


def readme_snippets() -> list[Snippet]:
    """Return the code blocks of the README's "Add it to your project", in order."""
    text = README.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    snippets, position = [], 0
    for fence in FENCE.finditer(section):
        before = section[position : fence.start()].strip().split("\n\n")[-1]
        snippets.append(Snippet(fence[1], fence[2], " ".join(before.split())))
        position = fence.end()
    return snippets


def replace_assignments(source: str, snippet: str, names: list[str]) -> str:
    """Return *source* with its top-level assignments of *names* replaced by *snippet*'s."""
    new = {
        node.targets[0].id: ast.get_source_segment(snippet, node)
        for node in ast.parse(snippet).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert sorted(new) == sorted(names), "the snippet assigns other names than the text says"
    lines = source.splitlines(keepends=True)
    old = {
        node.targets[0].id: node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    # Bottom up, so that the line numbers of the assignments above stay right.
    for name in sorted(names, key=lambda name: -old[name].lineno if name in old else 0):
        if name not in old:
            pytest.fail(f"startproject's settings have no {name} to replace")
        node = old[name]
        lines[node.lineno - 1 : node.end_lineno] = [f"{new[name]}\n"]
    return "".join(lines)


def apply_snippet(project: Path, snippet: Snippet) -> None:
    """Apply *snippet* to the file the README names for it, as the README says."""
    action, name, names = snippet.target()
    path = project / name
    if action == "create":
        assert not path.exists(), f"{name} exists already: the README should say to replace it"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(snippet.code)
        return
    if not path.is_file():
        pytest.fail(f"The README names {name}, which startproject did not create")
    source = path.read_text()
    if action == "assignments":
        path.write_text(replace_assignments(source, snippet.code, names))
    elif action == "append":
        path.write_text(f"{source}\n{snippet.code}")
    else:
        path.write_text(snippet.code)


class Page(HTMLParser):
    """The forms of a page, each with the text of the table row it sits in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._row: list[str] | None = None
        self._row_forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None
        self._button: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr":
            self._row, self._row_forms = [], []
        elif tag == "form":
            self._form = {"action": attributes.get("action") or "", "fields": {}, "button": ""}
            self._form["row"] = ""
            self.forms.append(self._form)
            if self._row is not None:
                self._row_forms.append(self._form)
        elif tag == "input" and self._form is not None and attributes.get("name"):
            self._form["fields"][attributes["name"]] = attributes.get("value") or ""
        elif tag == "button":
            self._button = []

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self._form is not None:
            self._form["button"] = " ".join("".join(self._button).split())
            self._button = None
        elif tag == "form":
            self._form = None
        elif tag == "tr" and self._row is not None:
            for form in self._row_forms:
                form["row"] = " ".join("".join(self._row).split())
            self._row = None

    def form(self, button: str, row: str = "") -> dict[str, Any]:
        """Return the form whose button says *button*, in the row that mentions *row*."""
        found = [f for f in self.forms if f["button"] == button and row in f["row"]]
        assert len(found) == 1, f"{len(found)} forms with a {button!r} button in {row!r}"
        return found[0]


class Browser:
    """A browser with its own cookie jar and user agent, on the README's server."""

    def __init__(self, base_url: str, device: str) -> None:
        self.base_url = base_url
        self.pages: list[str] = []  # every page it saw, to look for session keys
        self.user_agent = UA[device]
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def open(self, url: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Request *url* (a POST when there is *data*), following redirects.

        Return the status, the path (and query) it ended on, and the page.
        """
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        # Always http://127.0.0.1: base_url is the server this test started.
        request = urllib.request.Request(  # noqa: S310
            urllib.parse.urljoin(self.base_url, url),
            data=body,
            headers={"User-Agent": self.user_agent},
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                status, final, page = response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as error:
            status, final, page = error.code, error.url, error.read().decode()
        self.pages.append(page)
        parts = urllib.parse.urlsplit(final)
        return status, parts.path + (f"?{parts.query}" if parts.query else ""), page

    def submit(self, page: str, button: str, row: str = "", **fields: str) -> tuple[int, str, str]:
        """Fill and submit the form of *page* whose button says *button*."""
        form = Page(page).form(button, row)
        return self.open(form["action"] or self.last_url, {**form["fields"], **fields})

    def log_in(self) -> str:
        """Log in through the login page that "your sessions" sends to; return that page."""
        status, self.last_url, page = self.open("/sessions/")
        assert status == 200
        assert self.last_url == "/accounts/login/?next=/sessions/", self.last_url
        status, url, page = self.submit(page, "Log in", username=USERNAME, password=PASSWORD)
        assert (status, url) == (200, "/sessions/"), page
        return page

    def session_key(self) -> str:
        return next(str(cookie.value) for cookie in self.cookies if cookie.name == "sessionid")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Project:
    """The README's project in a temporary directory, its commands run as the README says."""

    def __init__(self, root: Path) -> None:
        self.cwd = root
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = root / "runserver.log"
        self.base_url = ""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        # The django_sessionkit these tests import: this checkout, not an installed copy.
        self.env["PYTHONPATH"] = str(Path(django_sessionkit.__file__).resolve().parent.parent)
        self.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        command = " ".join(args)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def command(self, line: str) -> None:
        """Run one line of a console snippet of the README."""
        words = shlex.split(line, comments=True)
        if not words:
            return
        match words:
            case ["python", "-m", "pip", "install", package] | ["pip", "install", package]:
                # The checkout is on PYTHONPATH: check that the README names this package.
                assert package == "django-sessionkit"
            case ["django-admin", "startproject", name]:
                self.run("-m", "django", "startproject", name)
            case ["cd", directory]:
                self.cwd = self.cwd / directory
            case ["python", "manage.py", "check"]:
                output = self.run("manage.py", "check")
                assert "System check identified no issues (0 silenced)." in output, output
            case ["python", "manage.py", "createsuperuser"]:
                self.run(
                    "manage.py", "createsuperuser", "--noinput", "--username", USERNAME,
                    "--email", "admin@example.com",
                )  # fmt: skip
            case ["python", "manage.py", "runserver"]:
                self.start_server()
            case ["python", "manage.py", *args]:
                self.run("manage.py", *args)
            case _:
                pytest.fail(f"This test does not know the README's command {line!r}")

    def start_server(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                pytest.fail(f"runserver stopped:\n{self.server_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"runserver did not answer on port {port}:\n{self.server_log.read_text()}")

    def stop_server(self) -> None:
        if self.server is None:
            return
        self.server.terminate()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


@pytest.fixture
def readme_project(tmp_path: Path) -> Iterator[Project]:
    """Build the README's project, start its server; stop the server afterwards."""
    project = Project(tmp_path)
    try:
        for snippet in readme_snippets():
            if snippet.language == "console":
                for line in snippet.code.splitlines():
                    project.command(line)
            else:
                apply_snippet(project.cwd, snippet)
        if project.server is None:
            pytest.fail("The README's path never starts the server")
        yield project
    finally:
        project.stop_server()


def test_readme_snippets_each_name_their_file():
    actions = [s.target()[:2] for s in readme_snippets() if s.language != "console"]
    assert actions == [
        ("assignments", "mysite/settings.py"),
        ("append", "mysite/settings.py"),
        ("replace", "mysite/urls.py"),
        ("create", "templates/registration/login.html"),
    ]


def test_installation_page_shows_the_readme_snippets():
    page = (ROOT / "docs" / "installation.rst").read_text()
    for snippet in readme_snippets():
        if snippet.language != "console":
            indented = textwrap.indent(snippet.code, "   ", lambda line: bool(line.strip()))
            assert indented in page, snippet.code


def test_readme_project_from_startproject_to_your_sessions_and_the_admin(readme_project):
    url = readme_project.base_url
    me = Browser(url, "desktop")
    my_page = me.log_in()
    assert "(this device)" in Page(my_page).form("Log out")["row"]
    assert DEVICES["desktop"] in Page(my_page).form("Log out")["row"]
    # The app's stylesheet is served: DEBUG is on in a new project.
    assert "/static/django_sessionkit/sessionkit.css" in my_page
    status, _, css = me.open("/static/django_sessionkit/sessionkit.css")
    assert status == 200
    assert ".sessionkit-visually-hidden" in css
    # The way back to the site leads somewhere.
    assert 'href="/"' in my_page
    assert me.open("/")[:2] == (200, "/sessions/")

    laptop, phone = Browser(url, "laptop"), Browser(url, "phone")
    laptop.log_in()
    phone.log_in()
    keys = [browser.session_key() for browser in (me, laptop, phone)]
    status, _, my_page = me.open("/sessions/")
    rows = {form["row"] for form in Page(my_page).forms if form["button"] in ("Revoke", "Log out")}
    assert len(rows) == 3
    assert sum("(this device)" in row for row in rows) == 1

    # Revoke one other browser: it is logged out at once.
    status, path, my_page = me.submit(my_page, "Revoke", row=DEVICES["laptop"])
    assert (status, path) == (200, "/sessions/")
    assert "The session was revoked; that device is logged out." in my_page
    assert DEVICES["laptop"] not in my_page
    assert laptop.open("/sessions/")[1] == "/accounts/login/?next=/sessions/"
    assert phone.open("/sessions/")[1] == "/sessions/"

    # Log out all the others.
    laptop.log_in()
    keys.append(laptop.session_key())
    status, _, my_page = me.open("/sessions/")
    status, path, my_page = me.submit(my_page, "Log out all other sessions")
    assert (status, path) == (200, "/sessions/")
    assert "2 other sessions were revoked." in my_page
    assert laptop.open("/sessions/")[1] == "/accounts/login/?next=/sessions/"
    assert phone.open("/sessions/")[1] == "/accounts/login/?next=/sessions/"

    # The admin's session browser, for the superuser.
    status, path, admin_page = me.open("/admin/django_sessionkit/session/")
    assert (status, path) == (200, "/admin/django_sessionkit/session/")
    assert "Select session to view" in admin_page
    assert DEVICES["desktop"] in admin_page

    # A staff user sees it with view_session, and not without.
    readme_project.run(
        "manage.py", "shell", "-c",
        "from django.contrib.auth.models import Permission, User\n"
        f"staff = User.objects.create_user('staff', password={PASSWORD!r}, is_staff=True)\n"
        "viewer = User.objects.create(username='viewer', password=staff.password, is_staff=True)\n"
        "viewer.user_permissions.add(Permission.objects.get("
        "content_type__app_label='django_sessionkit', codename='view_session'))",
    )  # fmt: skip
    for username, status in [("staff", 403), ("viewer", 200)]:
        browser = Browser(url, "laptop")
        _, browser.last_url, page = browser.open("/accounts/login/")
        # Without a next page, the login lands on LOGIN_REDIRECT_URL.
        landed = browser.submit(page, "Log in", username=username, password=PASSWORD)
        assert landed[:2] == (200, "/sessions/")
        assert browser.open("/admin/django_sessionkit/session/")[0] == status, username

    # Log out on this device's row: back to the login page, logged out.
    status, path, page = me.submit(my_page, "Log out", row="(this device)")
    assert (status, path) == (200, "/accounts/login/")
    assert me.open("/sessions/")[1] == "/accounts/login/?next=/sessions/"

    # No page showed a session key.
    pages = [page for browser in (me, laptop, phone) for page in browser.pages]
    assert not [key for key in keys for page in pages if key in page]
