"""A real ``redis-server`` on 127.0.0.1 for the scaling tests, on a temporary port and directory.

Tests skip, saying why, where no ``redis-server`` binary exists (``.ci/run``
installs Debian's package) or the ``redis`` client package is missing;
:func:`redis_cluster` also needs ``redis-cli`` (same package).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import REPO, Peer, free_port, start_hub_process

sys.path.insert(0, str(REPO / "bench"))
from redis_bench_support import cluster_port  # the bench starts clusters too

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

    def __init__(self, binary: str, directory: Path, port: int | None = None, **extra: str) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port() if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra = extra  # more options, e.g. cluster_enabled="yes"

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
        } | {key.replace("_", "-"): value for key, value in self.extra.items()}
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


class RedisCluster:
    """A Redis Cluster of ``count`` primaries on 127.0.0.1, no replicas, all slots assigned."""

    def __init__(self, binary: str, cli: str, directory: Path, count: int = 3) -> None:
        self.binary = binary
        self.cli = cli
        self.directory = directory
        self.nodes = []
        for i in range(count):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            self.nodes.append(
                RedisServer(
                    binary,
                    node_dir,
                    cluster_port(),
                    cluster_enabled="yes",
                    cluster_config_file=str(node_dir / "nodes.conf"),
                    cluster_node_timeout="2000",
                    appendfsync="everysec",
                )
            )

    @property
    def seeds(self) -> str:
        """The nodes as ``--redis`` takes a seed list."""
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:  # a skip included: stop the nodes that did start
            self.stop()
            raise

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, timeout=WAIT, check=False,
        )  # fmt: skip
        if create.returncode != 0:
            pytest.skip(f"redis-cli --cluster create failed: {create.stdout[-200:]!r}")
        deadline = time.monotonic() + WAIT
        while not all(self.command(node, "CLUSTER", "INFO").find("cluster_state:ok") >= 0
                      for node in self.nodes):  # fmt: skip
            if time.monotonic() > deadline:
                pytest.skip("the redis cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def add_node(self, replica_of: int | None = None) -> RedisServer:
        """Start one more node: a primary without slots, or a replica of ``nodes[replica_of]``.

        Returns once the others know it (and a replica is in sync with its primary).
        """
        node_dir = self.directory / f"node{len(self.nodes)}"
        node_dir.mkdir()
        node = RedisServer(
            self.binary, node_dir, cluster_port(), cluster_enabled="yes",
            cluster_config_file=str(node_dir / "nodes.conf"), cluster_node_timeout="2000",
            appendfsync="everysec",
        )  # fmt: skip
        node.start()
        known = self.nodes[0 if replica_of is None else replica_of]
        add = [
            self.cli,
            "--cluster",
            "add-node",
            f"127.0.0.1:{node.port}",
            f"127.0.0.1:{known.port}",
        ]
        if replica_of is not None:
            primary_id = self.command(known, "CLUSTER", "MYID").strip()
            add += ["--cluster-slave", "--cluster-master-id", primary_id]
        subprocess.run(add, capture_output=True, timeout=WAIT, check=True)
        self.nodes.append(node)
        deadline = time.monotonic() + WAIT
        while not self._joined(node, replica_of is not None):
            if time.monotonic() > deadline:
                pytest.skip("the new redis node did not join the cluster")
            time.sleep(0.05)
        return node

    def _joined(self, node: RedisServer, replica: bool) -> bool:
        if replica:
            return "master_link_status:up" in self.command(node, "INFO", "replication")
        count = f"cluster_known_nodes:{len(self.nodes)}"
        return all(count in self.command(n, "CLUSTER", "INFO") for n in self.nodes)

    def command(self, node: RedisServer, *args: str) -> str:
        """One command through ``redis-cli`` on ``node``; its output."""
        done = subprocess.run(
            [self.cli, "-p", str(node.port), *args], capture_output=True, timeout=WAIT, check=True
        )
        return done.stdout.decode()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def key_slot(key: str) -> int:
    """Redis Cluster's slot of ``key``: CRC16 (XMODEM) of its hash tag, or of the key, mod 16384."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % 16384


@contextlib.contextmanager
def redis_cluster(directory: Path, count: int = 3) -> Iterator[RedisCluster]:
    """A started :class:`RedisCluster`, or skip where ``redis-server``/``redis-cli`` is missing."""
    binary = redis_server_binary()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("no redis-cli on PATH (apt-get install redis-tools; .ci/run does)")
    cluster = RedisCluster(binary, cli, directory, count)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class Hubs:
    """``fer-hub --redis`` processes on one Redis (or cluster), started and killed by a test."""

    def __init__(self, url: str, beat: str) -> None:
        self.url = url
        self.beat = beat
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: list[str] = []

    def start(self, count: int = 1, beat: str | None = None, redis: str | None = None) -> list[str]:
        """Start ``count`` hubs (on ``redis`` instead of the usual URL); their ws:// URLs."""
        for _ in range(count):
            proc, url = start_hub_process(
                "--redis", redis or self.url, "--redis-heartbeat", beat or self.beat,
                "--rate", "1000", "--burst", "1000", "--log-level", "WARNING",
            )  # fmt: skip
            self.procs.append(proc)
            self.urls.append(url)
        return self.urls[-count:]

    def kill(self, index: int) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.asynccontextmanager
async def member(url: str, user: str, **join: Any) -> AsyncIterator[Peer]:
    async with Peer.open(url) as peer:
        await peer.join("lobby", user, **join)
        yield peer


async def messages(peer: Peer, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The next ``count`` chat messages ``peer`` receives (presence is skipped)."""
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got.append(await peer.recv_type("message", timeout))
    return got


def healthy(hub_url: str) -> bool:
    """Whether the hub at ``ws://...`` answers ``/healthz`` with 200 (it can reach Redis)."""
    try:
        with urllib.request.urlopen(hub_url.replace("ws://", "http://") + "/healthz", timeout=2):
            return True
    except OSError:  # HTTPError 503 included
        return False


async def no_more_messages(peer: Peer, quiet: float = 0.5) -> bool:
    """True if no chat message arrives for ``quiet`` seconds (presence may)."""
    return not [f for f in await peer.drain(quiet) if f["type"] == "message"]
