"""Benchmark the hub against the original app's stack (Flask-SocketIO on eventlet).

    .venv/bin/python bench/hub_bench.py                 # sizes 10,100,500 + paced, ~3 min
    .venv/bin/python bench/hub_bench.py --quick         # sizes 10,100, shorter paced run
    .venv/bin/python bench/hub_bench.py --sizes 10,50 --no-peer

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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hub import protocol  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: fer-hub's ``--loop``; ``--hub-loop`` sets it, to compare uvloop with asyncio.
HUB_LOOP = "auto"


class ServerProcess:
    """A server under test, with its CPU time and peak RSS read from /proc."""

    def __init__(self, kind: str, peer_python: Path | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "hub":
            command = [
                sys.executable, "-m", "hub", "--port", str(self.port),
                "--rate", "1000000", "--burst", "1000000", "--log-level", "WARNING",
                "--loop", HUB_LOOP,
            ]  # fmt: skip
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
        payload = text.encode()
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
            elif opcode == 0x9:  # ping
                self.send_text(payload.decode(), opcode=0xA)
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
        run = Run()
        for client in clients:
            client.run = run
        # Small rooms repeat the burst so the CPU time (10 ms ticks) means something.
        rounds = min(100, max(1, -(-20_000 // (size * size))))
        ids: list[str] = []
        busy = 0.0
        cpu_before = server.cpu_seconds()
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
        run = Run()
        for client in clients:
            client.run = run
        total = int(rate * seconds)
        ids = [f"p{i}" for i in range(total)]
        cpu_before = server.cpu_seconds()
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
        default=15.0,
        help="stop waiting once no delivery arrived for this long; the rest count as lost",
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
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [10, 100]
        args.paced_seconds = 3.0
    return args


def main(argv: Sequence[str] | None = None) -> None:
    global HUB_LOOP
    args = parse_args(argv)
    HUB_LOOP = args.hub_loop
    # Collector pauses in the load generator would show up as latency.
    gc.disable()
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows = asyncio.run(main_async(args))
    command = "python bench/hub_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
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
