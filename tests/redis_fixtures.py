"""A real ``redis-server`` on 127.0.0.1 for the scaling tests, on a temporary port and directory.

Tests skip, saying why, where no ``redis-server`` binary exists (``.ci/run``
installs Debian's package) or the ``redis`` client package is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import free_port

WAIT = 10.0


def redis_server_binary() -> str:
    """Path of ``redis-server``, or skip the test with the reason."""
    pytest.importorskip("redis", reason="the redis package is not installed (dev extra)")
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("no redis-server on PATH (apt-get install redis-server; .ci/run does)")
    return path


class RedisServer:
    """One ``redis-server`` process, stoppable and restartable on the same port and data.

    AOF with ``appendfsync always``: what a script wrote survives a restart,
    which is how the hub's documentation tells operators to run Redis.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, *self._options()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while not self._answers_ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip("redis-server did not start on 127.0.0.1")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it flushes the AOF) and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.proc = None

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def _options(self) -> list[str]:
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "loglevel": "warning",
        }
        return [item for key, value in options.items() for item in (f"--{key}", value)]

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_binary(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
