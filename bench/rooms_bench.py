"""What one connection per room costs the hub: memory and CPU per extra connection.

    /work/venv/bin/python bench/rooms_bench.py                    # 40 users x 1, 5, 10 rooms
    /work/venv/bin/python bench/rooms_bench.py --users 20 --rooms 1,3 --quick

A client in several rooms holds one WebSocket per room (``docs/protocol.md``):
the alternative, several rooms multiplexed on one connection, would save the
hub one connection per extra room (and coalesce a user's rooms into fewer
writes), since each message still goes once to each member of its room. This
script measures that saving's size. For each rooms-per-user count R, a fresh
``fer-hub`` process (default settings but the rate limit, keepalive at
``--ping-interval``) gets ``--users`` users, each joining R rooms on R
connections, as the real client does:

* RSS: the hub's resident memory from /proc before any connection (the
  baseline of the row) and with every connection joined; per connection;
* join CPU: the hub's CPU seconds to accept and join all of them, per connection;
* idle CPU: the hub's CPU seconds per connection per minute while nothing is
  said (keepalive pings only), over ``--idle-seconds``;
* client memory: this script's own RSS growth per connection it holds (a
  websockets client connection, what each ``HubConnection`` wraps);
* traffic CPU: every user joins ``lobby-0`` .. ``lobby-<R-1>`` and sends
  ``ROUNDS`` messages into each, each of which reaches the ``--users`` members of that room: hub
  CPU per delivery (a multiplexed connection would deliver as many).

Every figure is also shown as a ratio to the R = 1 row of the same run (the
machine is noisy, absolute figures vary).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from hub import protocol  # noqa: E402

#: Messages each user sends into each of its rooms (CPU ticks are 10 ms: enough to count).
ROUNDS = 20
CLOCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


@contextlib.contextmanager
def hub_process(ping_interval: float) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "--host", "127.0.0.1", "--port", "0",
         "--rate", "100000", "--burst", "100000", "--max-connections", "100000",
         "--ping-interval", str(ping_interval), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"hub did not start: {line!r}")
    try:
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(10)


async def open_member(url: str, room: str, user: str) -> ClientConnection:
    ws = await connect(url, max_size=protocol.MAX_SERVER_FRAME_BYTES, compression=None)
    await ws.send(protocol.join_frame(room, user))
    while protocol.decode(await ws.recv())["type"] != "joined":
        pass
    return ws


async def drain(ws: ClientConnection, count: int) -> None:
    got = 0
    while got < count:
        got += protocol.decode(await ws.recv())["type"] == "message"


async def measure(url: str, pid: int, users: int, rooms: int, idle: float) -> dict[str, float]:
    """One row: open ``users`` x ``rooms`` connections, then idle, then one message each."""
    await asyncio.sleep(0.5)  # let the hub settle before the baseline
    rss0, cpu0 = rss_bytes(pid), cpu_seconds(pid)
    own0 = rss_bytes(os.getpid())
    conns: list[list[ClientConnection]] = []
    for u in range(users):  # one user after the other, its rooms at once
        conns.append(
            await asyncio.gather(*(open_member(url, f"lobby-{r}", f"u{u}") for r in range(rooms)))
        )
    count = users * rooms
    cpu1 = cpu_seconds(pid)
    for user_conns in conns:  # presence of later joiners: read it all
        for ws in user_conns:
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), 0.01)
    await asyncio.sleep(0.5)
    rss1 = rss_bytes(pid)
    own1 = rss_bytes(os.getpid())
    cpu_idle0 = cpu_seconds(pid)
    await asyncio.sleep(idle)
    cpu_idle = cpu_seconds(pid) - cpu_idle0
    cpu_t0 = cpu_seconds(pid)
    readers = [
        asyncio.create_task(drain(ws, users * ROUNDS)) for user_conns in conns for ws in user_conns
    ]
    for i in range(ROUNDS):
        for u, user_conns in enumerate(conns):
            for r, ws in enumerate(user_conns):
                await ws.send(protocol.message_frame(f"m{u}-{r}-{i}", "hello"))
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    cpu_traffic = cpu_seconds(pid) - cpu_t0
    for user_conns in conns:  # no close handshakes: the hub process goes next
        for ws in user_conns:
            ws.transport.abort()
    return {
        "connections": count,
        "rss_mb": rss1 / 2**20,
        "rss_base_mb": rss0 / 2**20,
        "rss_kb_per_conn": (rss1 - rss0) / count / 1024,
        "client_kb_per_conn": (own1 - own0) / count / 1024,
        "join_ms_per_conn": (cpu1 - cpu0) / count * 1000,
        "idle_ms_per_conn_min": cpu_idle / count / idle * 60 * 1000,
        "us_per_delivery": cpu_traffic / (count * users * ROUNDS) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--rooms", default="1,5,10", help="rooms per user, comma-separated")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--ping-interval", type=float, default=2.0, help="hub keepalive, s")
    parser.add_argument("--quick", action="store_true", help="3 s idle")
    args = parser.parse_args()
    idle = 3.0 if args.quick else args.idle_seconds
    rows = []
    for rooms in (int(r) for r in args.rooms.split(",")):
        with hub_process(args.ping_interval) as (proc, url):
            rows.append(asyncio.run(measure(url, proc.pid, args.users, rooms, idle)))
            rows[-1]["rooms"] = rooms
    base = rows[0]
    print(f"{args.users} users; keepalive every {args.ping_interval:g} s; idle {idle:g} s")
    print(
        "| rooms/user | connections | hub RSS MB (x R=1) | RSS KB/conn | join CPU ms/conn"
        " | idle CPU ms/conn/min | CPU us/delivery (x R=1) | client KB/conn |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['rooms']} | {row['connections']} "
            f"| {row['rss_mb']:.1f} ({row['rss_mb'] / base['rss_mb']:.2f}) "
            f"| {row['rss_kb_per_conn']:.0f} | {row['join_ms_per_conn']:.2f} "
            f"| {row['idle_ms_per_conn_min']:.2f} "
            f"| {row['us_per_delivery']:.1f}"
            f" ({row['us_per_delivery'] / max(base['us_per_delivery'], 1e-9):.2f})"
            f" | {row['client_kb_per_conn']:.0f} |"
        )
    print(f"baseline hub RSS before any connection: {base['rss_base_mb']:.1f} MB")


if __name__ == "__main__":
    main()
