"""A throwaway ``redis-server`` for ``bench/hub_bench.py --hubs``.

Like ``tests/redis_fixtures.py`` (127.0.0.1, a free port, a temporary
directory, AOF on) but without pytest, and with ``appendfsync everysec`` by
default: ``always`` would put one fsync per message on the benchmark's disk,
which measures the disk rather than the hubs. The bench says which it used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """One ``redis-server`` on ``port``, its data in a directory removed by :meth:`stop`."""

    def __init__(self, port: int, appendfsync: str = "everysec") -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("no redis-server on PATH (apt-get install redis-server)")
        self.port = port
        self.appendfsync = appendfsync
        self._directory = tempfile.TemporaryDirectory(prefix="hub-bench-redis-")
        options = {
            "bind": "127.0.0.1",
            "port": str(port),
            "dir": self._directory.name,
            "appendonly": "yes",
            "appendfsync": appendfsync,
            "save": "",
            "daemonize": "no",
            "loglevel": "warning",
            "maxclients": "10000",
        }
        args = [item for key, value in options.items() for item in (f"--{key}", value)]
        self.proc = subprocess.Popen(
            [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers PING (tens of milliseconds)."""
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {timeout}s")
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server, all its threads (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def info(self) -> dict[str, Any]:
        """The server's ``INFO`` (version, connections and commands so far)."""
        import redis  # the hub's redis extra, in .venv

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return client.info()
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._directory.cleanup()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
