"""A throwaway ``redis-server``, or Redis Cluster, for ``bench/hub_bench.py --hubs``.

Like ``tests/redis_fixtures.py`` (127.0.0.1, a free port, a temporary
directory, AOF on) but without pytest, and with ``appendfsync everysec`` by
default: ``always`` would put one fsync per message on the benchmark's disk,
which measures the disk rather than the hubs. The bench says which it used.
:class:`RedisClusterProcess` makes several such servers one Redis Cluster
(``redis-cli --cluster create``, so ``redis-cli`` must be installed too).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
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

    def __init__(self, port: int, appendfsync: str = "everysec", cluster: bool = False) -> None:
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
        if cluster:
            nodes_conf = str(Path(self._directory.name) / "nodes.conf")
            options |= {"cluster-enabled": "yes", "cluster-config-file": nodes_conf}
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

    def running(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server, all its threads (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def info(self) -> dict[str, Any]:
        """The server's ``INFO`` (version, connections and commands so far)."""
        return self.command("INFO")  # type: ignore[no-any-return]

    def command(self, *args: str) -> Any:
        """One command on this server, its reply as redis-py parses it."""
        import redis  # the hub's redis extra, in .venv

        client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        try:
            return client.execute_command(*args)
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


def cluster_port(taken: Sequence[int] = ()) -> int:
    """A free port whose cluster bus port (``port + 10000``) is free too, both not in ``taken``."""
    while True:
        port = free_port()
        if port + 10000 > 65535 or port in taken or port + 10000 in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterProcess:
    """``count`` cluster-enabled :class:`RedisProcess` nodes as one Redis Cluster.

    All primaries, no replicas, the 16384 slots split evenly by ``redis-cli
    --cluster create``; each node's data in its own directory, removed by
    :meth:`stop`. ``cluster-node-timeout`` stays at its default (15 s): on a
    few shared cores a busy node can miss a shorter one, and the cluster
    would then refuse commands mid-run.
    """

    def __init__(self, count: int = 3, appendfsync: str = "everysec") -> None:
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        if not Path(cli).exists():
            raise RuntimeError("no redis-cli on PATH (apt-get install redis-tools)")
        self.cli = cli
        self.appendfsync = appendfsync
        self.nodes: list[RedisProcess] = []
        try:
            for _ in range(count):
                port = cluster_port([p for n in self.nodes for p in (n.port, n.port + 10000)])
                self.nodes.append(RedisProcess(port, appendfsync, cluster=True))
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The nodes as the seed list ``fer-hub --redis`` takes."""
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Start the nodes, join them into a cluster and block until it is ``cluster_state:ok``."""
        for node in self.nodes:
            node.wait_ready(timeout)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-300:]!r}")
        # Every node must know every slot's owner before a hub asks any of them.
        deadline = time.monotonic() + timeout
        while not all("cluster_state:ok" in node.command("CLUSTER", "INFO") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok within {timeout}s")
            time.sleep(0.05)

    def running(self) -> bool:
        """Whether every node still runs."""
        return all(node.running() for node in self.nodes)

    def cpu_seconds(self) -> float:
        """User + system CPU time of all the nodes together."""
        return sum(node.cpu_seconds() for node in self.nodes)

    def info(self) -> dict[str, Any]:
        """The first node's ``INFO`` (all run the same binary)."""
        return self.nodes[0].info()

    def owners(self, keys: Sequence[str]) -> list[int]:
        """For each key, the index in :attr:`nodes` of the primary that holds its slot."""
        ranges = []  # (first slot, last slot, node index)
        by_port = {node.port: i for i, node in enumerate(self.nodes)}
        for line in self.nodes[0].command("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2].split(","):
                continue
            index = by_port[int(fields[1].split("@")[0].rsplit(":", 1)[1])]
            for part in fields[8:]:
                if not part.startswith("["):  # "[slot->-id]": a slot mid-migration
                    first, _, last = part.partition("-")
                    ranges.append((int(first), int(last or first), index))
        owners = []
        for key in keys:
            slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key))
            owners.append(next(i for first, last, i in ranges if first <= slot <= last))
        return owners

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
