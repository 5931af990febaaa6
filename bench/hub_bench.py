"""Benchmark the hub against the original app's stack (Flask-SocketIO on eventlet).

    .venv/bin/python bench/hub_bench.py                 # sizes 10,100,500 + paced, ~3 min
    .venv/bin/python bench/hub_bench.py --quick         # sizes 10,100, shorter paced run
    .venv/bin/python bench/hub_bench.py --sizes 10,50 --no-peer
    .venv/bin/python bench/hub_bench.py --hubs 1,2,3 [--quick]  # hubs on one Redis
    .venv/bin/python bench/hub_bench.py --hubs 1,2 --cluster     # ... and on a Redis Cluster

Both servers run as separate processes on 127.0.0.1 and get the same load
from the same minimal WebSocket client (:class:`BenchClient`; for the peer it
speaks Engine.IO 4 / Socket.IO 5 over a WebSocket directly, as a browser does
after the upgrade), so only the server differs. A fresh server serves each row.

* burst: N clients in one room each send one message at the same moment:
  N*N deliveries. Deliveries per second, latency from send to each delivery,
  lost and duplicated deliveries, and the server's CPU seconds during the burst
  (from /proc, so the load generator sharing the cores does not blur it) per
  delivery, and the server's peak RSS.
* paced: ``--paced-rate`` messages/s into a ``--paced-clients`` room for
  ``--paced-seconds``: latency p50/p99. The same paced load also goes to
  ``bench/raw_fanout_peer.py``, a bare asyncio fan-out with no checks at all:
  its latency is the floor that this machine and load generator allow.

The peer needs flask-socketio and eventlet, which are not project
dependencies: on first use this script creates the gitignored venv
``.bench-venv-socketio/`` beside ``.venv`` and pip-installs them there
(``--no-peer`` skips the peer). The hub runs with its rate limit raised
(``--rate/--burst``), everything else at its defaults.

``--hubs 1,2,3`` measures scaling out instead (no peer, no floor): the same
burst and paced loads on one hub without Redis ("embedded", the baseline),
then on 1, 2 and 3 hub processes sharing a fresh ``redis-server`` (see
``bench/redis_bench_support.py``), the clients round-robin over the hubs.
Every client must see ``seq`` 1, 2, 3 ... of its room with no gap (``seq
faults`` counts clients that did not). CPU is all hubs' together plus
redis-server's, from /proc. A third load, "push", measures sender-side
throughput: clients alone in their rooms fire messages, so each message is
stored and acknowledged through Redis with no fan-out.

``--cluster`` adds rows "cluster ×N" for each ``--hubs`` count: N hubs on a
fresh Redis Cluster of ``--cluster-nodes`` (3) primaries, started by the bench
(``RedisClusterProcess``, needs ``redis-cli``) and given to the hubs as a
seed list. The cluster places rooms by hash tag, so burst and paced (one
room) land on one node, while push's rooms spread over all of them: the
push table says how many rooms each node held. "Redis CPU" is then all
nodes' CPU together, and the same ratios against the embedded hub apply.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.redis_bench_support import RedisClusterProcess, RedisProcess, free_port  # noqa: E402
from hub import protocol  # noqa: E402
from hub.redis_scripts import room_base  # noqa: E402

PEER_VENV = REPO / ".bench-venv-socketio"
PEER_PACKAGES = ("flask-socketio>=5.3", "eventlet>=0.36")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- servers -------------------------------------------------------------------


def ensure_peer_venv() -> Path:
    """Return the peer venv's python, creating the venv on first use."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV.name}/ for the Flask-SocketIO peer ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


#: fer-hub's ``--loop``; ``--hub-loop`` sets it, to compare uvloop with asyncio.
HUB_LOOP = "auto"


class ServerProcess:
    """A server under test, with its CPU time and peak RSS read from /proc."""

    def __init__(
        self, kind: str, peer_python: Path | None = None, redis_url: str | None = None
    ) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "hub":
            command = [
                sys.executable, "-m", "hub", "--port", str(self.port),
                "--rate", "1000000", "--burst", "1000000", "--log-level", "WARNING",
                "--loop", HUB_LOOP,
            ]  # fmt: skip
            if redis_url is not None:
                command += ["--redis", redis_url]
        elif kind == "floor":
            command = [sys.executable, str(REPO / "bench" / "raw_fanout_peer.py"), str(self.port)]
        else:
            assert peer_python is not None
            command = [str(peer_python), str(REPO / "bench" / "flask_socketio_peer.py"),
                       str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError(f"{self.kind} did not listen within {timeout}s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- clients -------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """Shared bookkeeping for one measurement."""

    sent_at: dict[str, float] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)
    deliveries: int = 0
    last_delivery: float = 0.0


class BenchClient(asyncio.Protocol):
    """One chat user over a minimal WebSocket client; ``kind`` picks the hub or Socket.IO.

    A full client library costs tens of microseconds per received frame; with
    20,000 deliveries per second on two shared cores the load generator, not
    the server, would set the latency. This client parses the server's
    unmasked frames in ``data_received`` and finds a message's ``id`` without
    decoding its JSON. It masks its own frames with a zero key: valid framing,
    and predictable keys only matter against proxies, not here.
    """

    def __init__(self, kind: str, user: str) -> None:
        self.kind, self.user = kind, user
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = False
        self.seen: dict[str, int] = {}
        self.run: Run | None = None
        self.dropped = False
        self.waiting: tuple[bytes, asyncio.Future[None]] | None = None
        self.inbox: list[bytes] = []  # frames that came before anyone expected them

    @classmethod
    async def open(cls, kind: str, port: int, room: str, user: str) -> BenchClient:
        loop = asyncio.get_running_loop()
        client = cls(kind, user)
        await loop.create_connection(lambda: client, "127.0.0.1", port)
        path = "/socket.io/?EIO=4&transport=websocket" if kind == "socketio" else "/"
        key = base64.b64encode(os.urandom(16)).decode()
        assert client.transport is not None
        opened = client.expect(b"")
        client.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        if kind != "socketio":  # the hub, or the floor speaking the hub's protocol
            await opened
            joined = client.expect(b'{"type":"joined"')
            client.send_text(protocol.join_frame(room, user, session=protocol.new_session()))
            await joined
        else:
            await opened
            await client.expect(b"0")  # Engine.IO open
            connected = client.expect(b"40")
            client.send_text("40")  # Socket.IO connect to "/"
            await connected
            joined = client.expect(b'42["joined"')
            client.send_text("42" + json.dumps(["join", {"room": room, "user": user}]))
            await joined
        return client

    def expect(self, prefix: bytes) -> asyncio.Future[None]:
        """Return a future done when a text frame starting with ``prefix`` arrives."""
        future = asyncio.get_running_loop().create_future()
        for i, early in enumerate(self.inbox):
            if early.startswith(prefix):
                del self.inbox[: i + 1]
                future.set_result(None)
                return future
        self.waiting = (prefix, future)
        return future

    async def send(self, id: str, text: str) -> None:
        if self.kind != "socketio":
            self.send_text(protocol.message_frame(id, text))
        else:
            self.send_text("42" + json.dumps(["message", {"id": id, "text": text}]))

    def send_text(self, text: str, opcode: int = 0x1) -> None:
        self.send_frame(text.encode(), opcode)

    def send_frame(self, payload: bytes, opcode: int) -> None:
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(header + b"\0\0\0\0" + payload)

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.dropped = True
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(ConnectionError(f"{self.user}: connection lost"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(bytes(buffer[:80]))
            del buffer[: end + 4]
            self.handshaken = True
            self._deliver(b"")
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            offset = start + length
            if opcode == 0x1:
                self._deliver(payload)
            elif opcode == 0x9:  # ping: websockets' payload is random bytes, not UTF-8
                self.send_frame(payload, opcode=0xA)
            elif opcode == 0x8:  # close
                self.dropped = True
        del buffer[:offset]

    def _deliver(self, payload: bytes) -> None:
        now = time.perf_counter()
        if self.waiting is not None:
            prefix, future = self.waiting
            if payload.startswith(prefix) and not future.done():
                self.waiting = None
                future.set_result(None)
                return
        if self.run is None and len(self.inbox) < 100:
            self.inbox.append(payload)  # still setting up
        if self.kind != "socketio":
            if not payload.startswith(b'{"type":"message"'):
                return
        elif payload == b"2":  # Engine.IO ping
            self.send_text("3")
            return
        elif not payload.startswith(b'42["message"'):
            return
        id = _id_of(payload)
        self.seen[id] = self.seen.get(id, 0) + 1
        run = self.run
        if run is not None and id in run.sent_at:
            run.latencies.append(now - run.sent_at[id])
            run.deliveries += 1
            run.last_delivery = now

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _id_of(raw: bytes) -> str:
    """Return the first ``"id"`` string in ``raw`` (bench ids need no escaping)."""
    start = raw.index(b'"id":') + 5
    start = raw.index(b'"', start) + 1
    return raw[start : raw.index(b'"', start)].decode()


async def open_clients(kind: str, port: int, count: int) -> list[BenchClient]:
    limit = asyncio.Semaphore(50)

    async def one(i: int) -> BenchClient:
        async with limit:
            return await BenchClient.open(kind, port, "bench", f"user{i}")

    clients = await asyncio.gather(*(one(i) for i in range(count)))
    await asyncio.sleep(0.5 + count / 500)  # let presence traffic settle
    return list(clients)


async def wait_for_deliveries(run: Run, expected: int, idle_timeout: float) -> None:
    """Return once ``expected`` deliveries arrived or none arrived for ``idle_timeout``."""
    last_count, last_change = -1, time.perf_counter()
    while run.deliveries < expected:
        await asyncio.sleep(0.05)
        if run.deliveries != last_count:
            last_count, last_change = run.deliveries, time.perf_counter()
        elif time.perf_counter() - last_change > idle_timeout:
            return


# --- loads ---------------------------------------------------------------------


def attach_run(clients: Sequence[BenchClient]) -> Run:
    """Start counting deliveries on ``clients``."""
    run = Run()
    for client in clients:
        client.run = run
    return run


async def burst_rounds(
    clients: Sequence[BenchClient], run: Run, idle_timeout: float
) -> tuple[list[str], float]:
    """Every client sends one message at once, repeated; return the ids and busy seconds."""
    size = len(clients)
    # Small rooms repeat the burst so the CPU time (10 ms ticks) means something.
    rounds = min(100, max(1, -(-20_000 // (size * size))))
    ids: list[str] = []
    busy = 0.0
    for r in range(rounds):
        round_ids = [f"b{r}-{i}" for i in range(size)]
        ids += round_ids
        start = time.perf_counter()
        for id in round_ids:
            run.sent_at[id] = start
        for client, id in zip(clients, round_ids, strict=True):
            await client.send(id, f"burst {id}")  # writes at once, never waits
        await wait_for_deliveries(run, len(ids) * size, idle_timeout)
        busy += (run.last_delivery or time.perf_counter()) - start
    return ids, busy


async def paced_sends(
    clients: Sequence[BenchClient], run: Run, rate: float, seconds: float, idle_timeout: float
) -> tuple[list[str], float, float]:
    """Send ``rate`` messages/s for ``seconds``, each client in turn; return ids, start, end."""
    size = len(clients)
    total = int(rate * seconds)
    ids = [f"p{i}" for i in range(total)]
    start = time.perf_counter()
    for i, id in enumerate(ids):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.sent_at[id] = time.perf_counter()
        await clients[i % size].send(id, f"paced {id}")
    await wait_for_deliveries(run, total * size, idle_timeout)
    end = run.last_delivery or time.perf_counter()
    return ids, start, end


# --- measurements -------------------------------------------------------------


@dataclasses.dataclass
class Row:
    load: str
    server: str
    clients: int
    deliveries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int
    dropped_clients: int
    cpu_s: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_delivery(self) -> float:
        return 1e6 * self.cpu_s / self.deliveries if self.deliveries else float("nan")


def tally(clients: Sequence[BenchClient], ids: Sequence[str]) -> tuple[int, int]:
    """Return (lost, duplicated) deliveries of ``ids`` across ``clients``."""
    lost = duplicated = 0
    for client in clients:
        for id in ids:
            count = client.seen.get(id, 0)
            lost += count == 0
            duplicated += max(0, count - 1)
    return lost, duplicated


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] * 1000


async def burst(kind: str, size: int, peer: Path | None, idle_timeout: float) -> Row:
    server = ServerProcess(kind, peer)
    try:
        await server.wait_ready()
        clients = await open_clients(kind, server.port, size)
        run = attach_run(clients)
        cpu_before = server.cpu_seconds()
        ids, busy = await burst_rounds(clients, run, idle_timeout)
        cpu = server.cpu_seconds() - cpu_before
        end, start = busy, 0.0
        lost, duplicated = tally(clients, ids)
        row = Row(
            "burst", kind, size, run.deliveries, end - start,
            percentile(run.latencies, 50), percentile(run.latencies, 99), lost, duplicated,
            sum(c.dropped for c in clients), cpu, server.peak_rss_mb(),
        )  # fmt: skip
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return row
    finally:
        server.stop()


async def paced(
    kind: str, size: int, rate: float, seconds: float, peer: Path | None, idle_timeout: float
) -> Row:
    server = ServerProcess(kind, peer)
    try:
        await server.wait_ready()
        clients = await open_clients(kind, server.port, size)
        run = attach_run(clients)
        cpu_before = server.cpu_seconds()
        ids, start, end = await paced_sends(clients, run, rate, seconds, idle_timeout)
        cpu = server.cpu_seconds() - cpu_before
        lost, duplicated = tally(clients, ids)
        row = Row(
            f"paced {rate:g}/s", kind, size, run.deliveries, end - start,
            percentile(run.latencies, 50), percentile(run.latencies, 99), lost, duplicated,
            sum(c.dropped for c in clients), cpu, server.peak_rss_mb(),
        )  # fmt: skip
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return row
    finally:
        server.stop()


# --- report -------------------------------------------------------------------

NAMES = {"hub": "fer-hub", "socketio": "Flask-SocketIO", "floor": "bare fan-out (floor)"}


def table(rows: Sequence[Row]) -> str:
    head = (
        "| load | server | clients | deliveries/s | p50 ms | p99 ms | lost | dup "
        "| dropped clients | server CPU s | CPU µs/delivery | peak RSS MB |"
    )
    lines = [head, _rule(head)]
    for r in rows:
        lines.append(
            f"| {r.load} | {NAMES[r.server]} | {r.clients} | {r.rate:,.0f} | {r.p50_ms:.1f} "
            f"| {r.p99_ms:.1f} | {r.lost} | {r.duplicated} | {r.dropped_clients} "
            f"| {r.cpu_s:.2f} | {r.cpu_us_per_delivery:.1f} | {r.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def ratios(rows: Sequence[Row]) -> str:
    """fer-hub / Flask-SocketIO for each load both served."""
    by_key = {(r.load, r.clients, r.server): r for r in rows}
    lines = [
        "| load | clients | CPU per delivery (hub/peer) | deliveries/s (hub/peer) "
        "| p99 (hub/peer) | peak RSS (hub/peer) |",
        "|---|---|---|---|---|---|",
    ]
    for (load, clients, server), hub in by_key.items():
        peer = by_key.get((load, clients, "socketio"))
        if server != "hub" or peer is None:
            continue
        lines.append(
            f"| {load} | {clients} | {_ratio(hub.cpu_us_per_delivery, peer.cpu_us_per_delivery)} "
            f"| {_ratio(hub.rate, peer.rate)} | {_ratio(hub.p99_ms, peer.p99_ms)} "
            f"| {_ratio(hub.peak_rss_mb, peer.peak_rss_mb)} |"
        )
    return "\n".join(lines)


def goals(rows: Sequence[Row]) -> str:
    """Say which of the hub's stated goals this run met."""
    hub_rows = [r for r in rows if r.server == "hub"]
    clean = all(r.lost == 0 and r.duplicated == 0 and r.dropped_clients == 0 for r in hub_rows)
    lines = [f"- fer-hub lost, duplicated or dropped nothing at every load: {_yes(clean)}"]
    by_key = {(r.load, r.clients, r.server): r for r in rows}
    for r in hub_rows:
        peer = by_key.get((r.load, r.clients, "socketio"))
        if r.load == "burst" and peer is not None:
            ratio = r.cpu_us_per_delivery / peer.cpu_us_per_delivery
            lines.append(
                f"- burst {r.clients}: hub CPU per delivery at most 1/5 of Flask-SocketIO's:"
                f" {_yes(ratio <= 0.2)} ({ratio:.2f}×)"
            )
        elif r.load.startswith("paced"):
            floor = by_key.get((r.load, r.clients, "floor"))
            context = "" if floor is None else f"; the bare fan-out floor: {floor.p99_ms:.1f} ms"
            lines.append(
                f"- {r.load} into {r.clients} clients: p99 under 20 ms:"
                f" {_yes(r.p99_ms < 20)} ({r.p99_ms:.1f} ms{context})"
            )
    return "\n".join(lines)


def _yes(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and b == b and a == a else "n/a"


# --- several hubs on one Redis (--hubs) -----------------------------------------


class SeqClient(BenchClient):
    """A :class:`BenchClient` that also checks the ``seq`` of every message it gets.

    In a fresh room every client must see seq 1, 2, 3, ... with no gap, repeat
    or reordering, whichever hub it is on: ``breaks`` counts the messages that
    did not continue the sequence. ``frames`` counts everything received, to
    tell when the joins' presence traffic has settled; ``errors`` the hub's
    ``error`` frames (e.g. ``unavailable``: a post it could not store).
    """

    def __init__(self, kind: str, user: str) -> None:
        super().__init__(kind, user)
        self.last_seq = 0
        self.breaks = 0
        self.frames = 0
        self.errors = 0

    def _deliver(self, payload: bytes) -> None:
        super()._deliver(payload)
        self.frames += 1
        if payload.startswith(b'{"type":"message"'):
            start = payload.index(b'"seq":') + 6
            seq = int(payload[start : payload.index(b",", start)])
            self.breaks += seq != self.last_seq + 1
            self.last_seq = seq
        elif payload.startswith(b'{"type":"error"'):
            self.errors += 1

    def seq_broken(self, total: int) -> bool:
        """Whether this client's messages were not exactly seq 1..``total`` in order."""
        return self.breaks > 0 or self.last_seq != total


def seq_faults(clients: Sequence[SeqClient], total: int) -> int:
    return sum(c.seq_broken(total) for c in clients)


class Deployment:
    """``hubs`` fer-hub processes on one fresh redis-server; ``hubs == 0``: one hub, no Redis.

    With ``cluster_nodes`` (at least 3), the hubs share a fresh Redis Cluster
    of that many primaries instead, given to them as a seed list.
    """

    def __init__(self, hubs: int, appendfsync: str, cluster_nodes: int = 0) -> None:
        self.hubs = hubs
        self.appendfsync = appendfsync
        self.cluster_nodes = cluster_nodes if hubs else 0
        self.redis: RedisProcess | RedisClusterProcess | None = None
        self.servers: list[ServerProcess] = []
        self.redis_info: dict[str, Any] = {}

    @property
    def name(self) -> str:
        if not self.hubs:
            return "embedded"
        return f"{'cluster' if self.cluster_nodes else 'redis'} ×{self.hubs}"

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    async def __aenter__(self) -> Deployment:
        try:
            url = None
            if self.cluster_nodes:
                self.redis = RedisClusterProcess(self.cluster_nodes, self.appendfsync)
                self.redis.wait_ready()
                url = self.redis.url
            elif self.hubs:
                self.redis = RedisProcess(free_port(), self.appendfsync)
                self.redis.wait_ready()
                url = self.redis.url
            self.servers = [ServerProcess("hub", redis_url=url) for _ in range(max(1, self.hubs))]
            for server in self.servers:
                await server.wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: all hubs together, and Redis (all cluster nodes; 0 without)."""
        hubs = sum(s.cpu_seconds() for s in self.servers)
        return hubs, 0.0 if self.redis is None else self.redis.cpu_seconds()

    def rooms_per_node(self, rooms: Sequence[str]) -> str:
        """How many of ``rooms`` each Redis server holds, e.g. ``19/17/14``; "-" without Redis."""
        if isinstance(self.redis, RedisClusterProcess):
            # A room's slot is its hash tag's, whatever the hub's key prefix.
            owners = self.redis.owners([room_base("", room) for room in rooms])
            return "/".join(str(owners.count(i)) for i in range(len(self.redis.nodes)))
        return "-" if self.redis is None else str(len(rooms))

    def _stop(self) -> None:
        if self.redis is not None and self.redis.running():
            self.redis_info = self.redis.info()
        for server in self.servers:
            server.stop()
        if self.redis is not None:
            self.redis.stop()


async def open_spread(ports: Sequence[int], rooms: Sequence[str]) -> list[SeqClient]:
    """Client ``i`` joins ``rooms[i]`` on hub ``ports[i % len(ports)]`` (round-robin)."""
    limit = asyncio.Semaphore(50)

    async def one(i: int) -> SeqClient:
        async with limit:
            client = await SeqClient.open("hub", ports[i % len(ports)], rooms[i], f"user{i}")
            assert isinstance(client, SeqClient)
            return client

    clients = await asyncio.gather(*(one(i) for i in range(len(rooms))))
    await settle(clients)
    return list(clients)


async def settle(clients: Sequence[SeqClient], quiet: float = 0.3, cap: float = 60.0) -> None:
    """Wait until no client got a frame for ``quiet`` seconds: presence has gone round.

    Through Redis the last joins' presence events arrive later than on one
    hub; measuring before they have would bill them to the load.
    """
    deadline = time.perf_counter() + cap
    last, changed = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        frames = sum(c.frames for c in clients)
        if frames != last:
            last, changed = frames, time.perf_counter()
        elif time.perf_counter() - changed >= quiet:
            return


@dataclasses.dataclass
class ScaleRow:
    load: str
    setup: str
    clients: int
    messages: int
    deliveries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int
    seq_faults: int
    errors: int
    dropped_clients: int
    hub_cpu_s: float
    redis_cpu_s: float

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0

    @property
    def cpu_s(self) -> float:
        return self.hub_cpu_s + self.redis_cpu_s

    def per_delivery_us(self, cpu_s: float) -> float:
        return 1e6 * cpu_s / self.deliveries if self.deliveries else float("nan")

    def per_message_us(self, cpu_s: float) -> float:
        return 1e6 * cpu_s / self.messages if self.messages else float("nan")


async def scale_burst(setup: Deployment, size: int, idle_timeout: float) -> ScaleRow:
    clients = await open_spread(setup.ports, ["bench"] * size)
    run = attach_run(clients)
    hubs_before, redis_before = setup.cpu()
    ids, busy = await burst_rounds(clients, run, idle_timeout)
    hubs_after, redis_after = setup.cpu()
    return await _scale_row("burst", setup, clients, run, ids, busy, (
        hubs_after - hubs_before, redis_after - redis_before))  # fmt: skip


async def scale_paced(
    setup: Deployment, size: int, rate: float, seconds: float, idle_timeout: float
) -> ScaleRow:
    clients = await open_spread(setup.ports, ["bench"] * size)
    run = attach_run(clients)
    hubs_before, redis_before = setup.cpu()
    ids, start, end = await paced_sends(clients, run, rate, seconds, idle_timeout)
    hubs_after, redis_after = setup.cpu()
    return await _scale_row(f"paced {rate:g}/s", setup, clients, run, ids, end - start, (
        hubs_after - hubs_before, redis_after - redis_before))  # fmt: skip


async def _scale_row(
    load: str,
    setup: Deployment,
    clients: Sequence[SeqClient],
    run: Run,
    ids: Sequence[str],
    seconds: float,
    cpu: tuple[float, float],
) -> ScaleRow:
    lost, duplicated = tally(clients, ids)
    row = ScaleRow(
        load, setup.name, len(clients), len(ids), run.deliveries, seconds,
        percentile(run.latencies, 50), percentile(run.latencies, 99), lost, duplicated,
        seq_faults(clients, len(ids)), sum(c.errors for c in clients),
        sum(c.dropped for c in clients), *cpu,
    )  # fmt: skip
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return row


@dataclasses.dataclass
class PushRow:
    """Sender-side throughput: each sender alone in its room fires its messages at once."""

    setup: str
    senders: int
    messages: int
    seconds: float
    acked: int
    lost: int
    duplicated: int
    seq_faults: int
    errors: int
    hub_cpu_s: float
    redis_cpu_s: float
    rooms_per_node: str  # how many rooms each Redis server holds, "-" without Redis
    round: int = 1  # of --push-rounds: each round runs every setup once, embedded first

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def per_message_us(self, cpu_s: float) -> float:
        return 1e6 * cpu_s / self.acked if self.acked else float("nan")


async def scale_push(
    setup: Deployment, senders: int, per_sender: int, idle_timeout: float
) -> PushRow:
    """How many messages/s the hubs get stored and acknowledged, fan-out aside.

    One member per room, so each message is one delivery (the sender's ack,
    which through Redis comes back only after the post script ran and its
    event returned). A hub sends a connection's posts to Redis without waiting
    for earlier answers (up to 64 in flight, those of one loop turn in one
    pipeline), so this measures its batching, not a round trip per message.
    """
    rooms = [f"push{i}" for i in range(senders)]
    clients = await open_spread(setup.ports, rooms)
    run = attach_run(clients)
    own = [[f"q{i}-{k}" for k in range(per_sender)] for i in range(senders)]
    hubs_before, redis_before = setup.cpu()
    start = time.perf_counter()
    for k in range(per_sender):
        for client, ids in zip(clients, own, strict=True):
            run.sent_at[ids[k]] = start
            await client.send(ids[k], f"push {ids[k]}")  # writes at once, never waits
    total = senders * per_sender
    await wait_for_deliveries(run, total, idle_timeout)
    end = run.last_delivery or time.perf_counter()
    hubs_after, redis_after = setup.cpu()
    lost = duplicated = 0
    for client, ids in zip(clients, own, strict=True):
        client_lost, client_duplicated = tally([client], ids)
        lost, duplicated = lost + client_lost, duplicated + client_duplicated
    row = PushRow(
        setup.name, senders, total, end - start, run.deliveries, lost, duplicated,
        seq_faults(clients, per_sender), sum(c.errors for c in clients),
        hubs_after - hubs_before, redis_after - redis_before, setup.rooms_per_node(rooms),
    )  # fmt: skip
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return row


async def scale_async(args: argparse.Namespace) -> tuple[list[ScaleRow], list[PushRow], str]:
    """Each load on the embedded hub, then on each ``--hubs`` count on Redis (and, with
    ``--cluster``, on a Redis Cluster); a fresh deployment for every row."""
    timeout = args.idle_timeout
    jobs: list[tuple[str, Callable[[Deployment], Awaitable[ScaleRow | PushRow]]]] = [
        (f"burst {size}", functools.partial(scale_burst, size=size, idle_timeout=timeout))
        for size in args.sizes
    ]
    if args.paced_clients:
        paced_job = functools.partial(
            scale_paced, size=args.paced_clients, rate=args.paced_rate,
            seconds=args.paced_seconds, idle_timeout=timeout,
        )  # fmt: skip
        jobs.append((f"paced {args.paced_clients}", paced_job))
    if args.push_senders:
        push_job = functools.partial(
            scale_push, senders=args.push_senders, per_sender=args.push_messages,
            idle_timeout=timeout,
        )  # fmt: skip
        # Rounds alternate the setups: the machine's load drifts between runs.
        jobs += [(f"push round {n}", push_job) for n in range(1, args.push_rounds + 1)]
    rows: list[ScaleRow] = []
    pushes: list[PushRow] = []
    version = "?"
    setups = [(0, 0)] + [(hubs, 0) for hubs in args.hubs]
    if args.cluster:
        setups += [(hubs, args.cluster_nodes) for hubs in args.hubs]
    for label, work in jobs:
        for hubs, nodes in setups:
            setup = Deployment(hubs, args.appendfsync, nodes)
            print(f"{label}: {setup.name} ...", file=sys.stderr, flush=True)
            async with setup:
                result = await work(setup)
            version = setup.redis_info.get("redis_version", version)
            if isinstance(result, PushRow):
                result.round = 1 + sum(p.setup == result.setup for p in pushes)
                pushes.append(result)
            else:
                rows.append(result)
    return rows, pushes, version


def scale_table(rows: Sequence[ScaleRow]) -> str:
    head = (
        "| load | setup | clients | deliveries/s | p50 ms | p99 ms | lost | dup | seq faults "
        "| error frames | dropped clients | hub CPU s | Redis CPU s | hub µs/delivery "
        "| Redis µs/message | hub CPU/message vs embedded | CPU/delivery vs embedded "
        "| p50 vs embedded | deliveries/s vs embedded |"
    )
    lines = [head, _rule(head)]
    base = {(r.load, r.clients): r for r in rows if r.setup == "embedded"}
    for r in rows:
        b = base.get((r.load, r.clients))
        cpu = r.per_delivery_us(r.cpu_s)
        ratios = (
            ("n/a",) * 4
            if b is None
            else (
                _ratio(r.per_message_us(r.hub_cpu_s), b.per_message_us(b.hub_cpu_s)),
                _ratio(cpu, b.per_delivery_us(b.cpu_s)),
                _ratio(r.p50_ms, b.p50_ms),
                _ratio(r.rate, b.rate),
            )
        )
        lines.append(
            f"| {r.load} | {r.setup} | {r.clients} | {r.rate:,.0f} | {r.p50_ms:.1f} "
            f"| {r.p99_ms:.1f} | {r.lost} | {r.duplicated} | {r.seq_faults} | {r.errors} "
            f"| {r.dropped_clients} | {r.hub_cpu_s:.2f} | {r.redis_cpu_s:.2f} "
            f"| {r.per_delivery_us(r.hub_cpu_s):.1f} | {r.per_message_us(r.redis_cpu_s):.1f} "
            f"| {' | '.join(ratios)} |"
        )
    return "\n".join(lines)


def push_table(rows: Sequence[PushRow]) -> str:
    head = (
        "| setup | senders (rooms) | rooms per Redis node | messages | acked messages/s | lost "
        "| dup | seq faults | error frames | hub CPU µs/message | Redis CPU µs/message "
        "| messages/s vs embedded | hub CPU/message vs embedded | CPU/message vs embedded |"
    )
    lines = [head, _rule(head)]
    for r in sorted(rows, key=lambda r: r.round):
        base = _push_base(rows, r)
        cpu = r.per_message_us(r.hub_cpu_s + r.redis_cpu_s)
        if base is None:
            ratios = "n/a | n/a | n/a"
        else:
            base_cpu = base.per_message_us(base.hub_cpu_s + base.redis_cpu_s)
            hub_ratio = _ratio(r.per_message_us(r.hub_cpu_s), base.per_message_us(base.hub_cpu_s))
            ratios = f"{_ratio(r.rate, base.rate)} | {hub_ratio} | {_ratio(cpu, base_cpu)}"
        setup = r.setup if r.round == 1 else f"{r.setup} (round {r.round})"
        lines.append(
            f"| {setup} | {r.senders} | {r.rooms_per_node} | {r.messages} | {r.rate:,.0f} "
            f"| {r.lost} | {r.duplicated} | {r.seq_faults} | {r.errors} "
            f"| {r.per_message_us(r.hub_cpu_s):.1f} | {r.per_message_us(r.redis_cpu_s):.1f} "
            f"| {ratios} |"
        )
    return "\n".join(lines)


def _push_base(rows: Sequence[PushRow], row: PushRow) -> PushRow | None:
    """The embedded row of ``row``'s round."""
    return next((r for r in rows if r.setup == "embedded" and r.round == row.round), None)


def push_rounds(rows: Sequence[PushRow]) -> str:
    """Each setup's hub CPU per message against embedded, median over the rounds."""
    lines = []
    for setup in dict.fromkeys(r.setup for r in rows if r.setup != "embedded"):
        ratios = []
        for r in rows:
            base = _push_base(rows, r)
            if r.setup == setup and base is not None and r.acked and base.acked:
                ratios.append(r.per_message_us(r.hub_cpu_s) / base.per_message_us(base.hub_cpu_s))
        if ratios:
            lines.append(
                f"- {setup}: {statistics.median(ratios):.2f}× (median of {len(ratios)};"
                f" {min(ratios):.2f}–{max(ratios):.2f}×)"
            )
    return "\n".join(lines)


def redis_overhead(
    rows: Sequence[ScaleRow], pushes: Sequence[PushRow], name: str, server: str = "redis-server"
) -> str:
    """What setup ``name`` (e.g. ``redis ×1``) costs per message against the embedded hub.

    ``server`` names where the Redis CPU went, e.g. "the 3 cluster nodes".
    """
    base = {(r.load, r.clients): r for r in rows if r.setup == "embedded"}
    lines = []
    for r in rows:
        b = base.get((r.load, r.clients))
        if r.setup != name or b is None:
            continue
        embedded = b.per_message_us(b.cpu_s)
        extra_hub = r.per_message_us(r.hub_cpu_s) - embedded
        lines.append(
            f"- {r.load}, {r.clients} clients: {r.per_message_us(r.cpu_s):,.0f} µs of CPU per"
            f" message against {embedded:,.0f} µs: {extra_hub:+,.0f} µs in the hub and"
            f" {r.per_message_us(r.redis_cpu_s):,.0f} µs in {server}; p50"
            f" {r.p50_ms:.1f} ms against {b.p50_ms:.1f} ms"
            + (f" (this row lost {r.lost} deliveries: not a clean figure)" if r.lost else "")
        )
    push = next((p for p in pushes if p.setup == name), None)
    push_base = next((p for p in pushes if p.setup == "embedded"), None)
    if push is not None and push_base is not None:
        embedded = push_base.per_message_us(push_base.hub_cpu_s)
        lines.append(
            f"- push ({push.senders} senders, fan-out 1): {push.rate:,.0f} messages/s"
            f" against {push_base.rate:,.0f}; {push.per_message_us(push.hub_cpu_s):.0f} µs"
            f" (hub) + {push.per_message_us(push.redis_cpu_s):.0f} µs ({server}) of CPU"
            f" per message against {embedded:.0f} µs"
        )
    return "\n".join(lines)


def scale_main(args: argparse.Namespace, command: str) -> None:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows, pushes, version = asyncio.run(scale_async(args))
    cores = os.cpu_count()
    cluster = (
        f", then as many on a Redis Cluster of {args.cluster_nodes} such servers (primaries"
        " only, slots split evenly; Redis CPU is all nodes' together; a burst or paced room"
        " is one slot, so one node serves it)"
        if args.cluster
        else ""
    )
    print(
        f"\n`{command}`: {cores} cores, {time.monotonic() - started:.0f} s, load average"
        f" {load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Rows: one hub without"
        f" Redis (embedded), then {', '.join(map(str, args.hubs))} fer-hub processes on one"
        f" redis-server {version} (appendonly yes, appendfsync {args.appendfsync}){cluster},"
        " fresh for each row; clients, and so senders, round-robin over the hubs. Hubs, Redis and"
        f" the load generator share the {cores} cores, so more hubs cannot be faster here:"
        " the rows show what spreading a room costs.\n"
    )
    print(scale_table(rows))
    if pushes:
        print(
            f"\nSender-side throughput: {args.push_senders} clients, each alone in its room,"
            f" each writing {args.push_messages} messages at once; messages/s until the last"
            " ack (a hub keeps up to 64 posts of a connection in flight to Redis).\n"
        )
        print(push_table(pushes))
        if args.push_rounds > 1:
            print("\nHub CPU per message against the embedded hub of the same round, push load:\n")
            print(push_rounds(pushes))
    one = min(args.hubs)
    print(f"\nWhat Redis adds per message (redis ×{one} against embedded, same run):\n")
    print(redis_overhead(rows, pushes, f"redis ×{one}"))
    if args.cluster:
        print(
            f"\nWhat a {args.cluster_nodes}-node Redis Cluster adds per message"
            f" (cluster ×{one} against embedded, same run):\n"
        )
        print(redis_overhead(rows, pushes, f"cluster ×{one}", f"the {args.cluster_nodes} nodes"))
    clean = all(
        r.lost == r.duplicated == r.seq_faults == r.errors == r.dropped_clients == 0 for r in rows
    )
    clean = clean and all(p.lost == p.duplicated == p.seq_faults == p.errors == 0 for p in pushes)
    print(
        "\n- nothing lost, duplicated, refused, dropped or out of seq order on any setup:"
        f" {_yes(clean)}"
    )


# --- main -----------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> list[Row]:
    peer = None if args.no_peer else ensure_peer_venv()
    kinds = ["hub"] if peer is None else ["hub", "socketio"]
    rows: list[Row] = []
    for size in args.sizes:
        for kind in kinds:
            print(f"burst: {NAMES[kind]}, {size} clients ...", file=sys.stderr, flush=True)
            rows.append(await burst(kind, size, peer, args.idle_timeout))
    if args.paced_clients:
        for kind in kinds + ([] if args.no_floor else ["floor"]):
            print(f"paced: {NAMES[kind]}, {args.paced_clients} clients ...", file=sys.stderr)
            rows.append(
                await paced(
                    kind,
                    args.paced_clients,
                    args.paced_rate,
                    args.paced_seconds,
                    peer,
                    args.idle_timeout,
                )
            )
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10, 100, 500],
        help="comma-separated burst room sizes",
    )
    parser.add_argument("--paced-clients", type=int, default=200, help="0 skips the paced run")
    parser.add_argument("--paced-rate", type=float, default=100.0, help="messages/s")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="stop waiting once no delivery arrived for this long; the rest count as lost"
        " (default 15 s; 5 s with --hubs, where a refused post stalls every round)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip Flask-SocketIO")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the paced run against bench/raw_fanout_peer.py (a bare fan-out: the floor)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10,100; 3 s paced run")
    parser.add_argument(
        "--hub-loop", choices=("auto", "uvloop", "asyncio"), default="auto",
        help="fer-hub's event loop (auto: uvloop where installed)",
    )  # fmt: skip
    scale = parser.add_argument_group("several hubs on one Redis")
    scale.add_argument(
        "--hubs",
        type=lambda s: sorted({int(x) for x in s.split(",") if x}),
        default=None,
        help="e.g. 1,2,3: run each load on one hub without Redis, then on that many hub"
        " processes on one redis-server (no Flask-SocketIO peer, no floor)",
    )
    scale.add_argument(
        "--cluster", action="store_true",
        help="also run each --hubs count on a fresh Redis Cluster (rows 'cluster ×N')",
    )  # fmt: skip
    scale.add_argument(
        "--cluster-nodes", type=int, default=3,
        help="primaries in the --cluster Redis Cluster (at least 3, as redis-cli requires)",
    )  # fmt: skip
    scale.add_argument(
        "--appendfsync", choices=("everysec", "always", "no"), default="everysec",
        help="the bench redis-server's AOF fsync policy (--hubs)",
    )  # fmt: skip
    scale.add_argument(
        "--push-senders", type=int, default=50,
        help="sender-side throughput (--hubs): clients, each alone in its room; 0 skips it",
    )  # fmt: skip
    scale.add_argument(
        "--push-messages", type=int, default=200, help="messages each push sender writes at once"
    )
    scale.add_argument(
        "--push-rounds", type=int, default=3,
        help="times the push load runs on every setup, alternating; the median ratio is printed",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.hubs is not None and (not args.hubs or min(args.hubs) < 1):
        parser.error("--hubs takes counts of at least 1, e.g. 1,2,3")
    if args.cluster and args.hubs is None:
        parser.error("--cluster adds rows to --hubs; give --hubs too, e.g. --hubs 1,2 --cluster")
    if args.cluster_nodes < 3:
        parser.error("--cluster-nodes: a Redis Cluster needs at least 3 primaries")
    if args.idle_timeout is None:
        args.idle_timeout = 15.0 if args.hubs is None else 5.0
    if args.quick:
        args.sizes = [10, 100]
        args.paced_seconds = 3.0
        args.push_messages = min(args.push_messages, 60)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    global HUB_LOOP
    args = parse_args(argv)
    HUB_LOOP = args.hub_loop
    # Collector pauses in the load generator would show up as latency.
    gc.disable()
    command = "python bench/hub_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.hubs is not None:
        scale_main(args, command.strip())
        return
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows = asyncio.run(main_async(args))
    print(
        f"\n`{command.strip()}`: {os.cpu_count()} cores, {time.monotonic() - started:.0f} s,"
        f" load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after\n"
    )
    print(table(rows))
    if not args.no_peer:
        print("\nfer-hub / Flask-SocketIO (eventlet), same run:\n")
        print(ratios(rows))
    print("\nIssue 3 goals, this run:\n")
    print(goals(rows))


if __name__ == "__main__":
    main()
