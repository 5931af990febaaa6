"""Three ``fer-hub --redis`` processes behind a real HAProxy running ``deploy/haproxy.cfg``.

The shipped config itself is tested: the test only fills in its environment
variables (addresses, a faster health check, a lower maxconn). Clients are the app's own
:class:`fer_tui.connection.HubConnection`, which reconnects, resumes with
``since`` + ``session`` and resends what was not acknowledged. One hub is
SIGKILLed (its sockets close) or SIGSTOPped (a hung hub: only the health
check and ``on-marked-down shutdown-sessions`` move its clients; the frozen
case fails without that line) mid-conversation, or Redis is restarted (every
hub fails its check, and everyone is closed and comes back). Everything runs
on 127.0.0.1; the test skips with a message where ``haproxy`` or
``redis-server`` is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hub_fixtures import REPO, Peer, free_port, start_hub_process
from redis_fixtures import RedisServer, redis_server

from fer_tui.connection import HubConnection, HubEvent, MessageReceived, StateChanged

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

CONFIG = REPO / "deploy" / "haproxy.cfg"
CLIENTS = 6
PER_CLIENT = 20  # 120 messages: all fit in one join's history (200)
PACE = 0.1  # seconds between one client's messages: under the hub's 5/s after the burst
KILL_AFTER = 8  # messages each client has queued when the hub dies


@pytest.fixture
def haproxy() -> str:
    """Path of ``haproxy``, or skip (before any process is started)."""
    path = shutil.which("haproxy")
    if path is None:
        pytest.skip("no haproxy on PATH (apt-get install haproxy; .ci/run does)")
    return path


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def _stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # a hub the test froze
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not listen: {log.read_text()}") from None
            time.sleep(0.02)


@dataclass
class Cluster:
    url: str  # the proxy's
    hubs: list[subprocess.Popen[str]]
    proxy: subprocess.Popen[bytes]
    redis: RedisServer
    log: Path  # what the proxy logs: server state changes, alerts

    def proxy_log(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def cluster(haproxy: str, redis: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    """Three hubs on ``redis`` and HAProxy in front."""
    binary = haproxy
    hubs: list[subprocess.Popen[str]] = []
    proxy: subprocess.Popen[bytes] | None = None
    try:
        env = dict(os.environ)
        for n in range(1, 4):
            proc, url = start_hub_process(
                "--redis", redis.url, "--redis-heartbeat", "0.2", "--log-level", "WARNING"
            )
            hubs.append(proc)
            env[f"HUB{n}"] = url.removeprefix("ws://")
        port = free_port()
        env.update(LB_BIND=f"127.0.0.1:{port}", LB_CHECK_INTER="200ms", LB_MAXCONN="1000")
        check = subprocess.run(
            [binary, "-c", "-f", str(CONFIG)], env=env, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        log = tmp_path / "haproxy.log"
        with log.open("w") as out:
            proxy = subprocess.Popen(
                [binary, "-db", "-f", str(CONFIG)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        _wait_listening(port, proxy, log)
        yield Cluster(f"ws://127.0.0.1:{port}", hubs, proxy, redis, log)
    finally:
        if proxy is not None:
            _stop(proxy)
        for proc in hubs:
            _stop(proc)


@dataclass
class Client:
    """One app connection through the proxy and what it reported."""

    user: str
    url: str
    conn: HubConnection = field(init=False)
    sent: list[str] = field(default_factory=list)
    received: list[MessageReceived] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # when each of ``received`` came
    states: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn = HubConnection(self.url, "lobby", self.user, self.on_event, min_backoff=0.05)

    def on_event(self, event: HubEvent) -> None:
        if isinstance(event, MessageReceived):
            self.received.append(event)
            self.arrived.append(time.monotonic())
        elif isinstance(event, StateChanged):
            self.states.append((time.monotonic(), event.state))

    def went_offline_after(self, moment: float) -> bool:
        return any(t >= moment and s == "offline" for t, s in self.states)

    def back_online_after(self, moment: float) -> float:
        return min(t for t, s in self.states if t >= moment and s == "online")


async def _until(condition: object, timeout: float) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "failure",
    [
        # Its sockets close at once: HAProxy closes the clients' side.
        pytest.param(signal.SIGKILL, id="killed"),
        # Its sockets stay open but nothing answers: only the health check
        # finds it, and only `on-marked-down shutdown-sessions` moves its clients.
        pytest.param(signal.SIGSTOP, id="frozen"),
        # Redis stops for a while: every hub fails /healthz, HAProxy closes
        # everyone, who retry until Redis and the hubs are back.
        pytest.param(None, id="redis-restart"),
    ],
)
async def test_clients_of_a_dead_hub_resume_through_haproxy_losing_nothing(
    cluster: Cluster, failure: signal.Signals | None
) -> None:
    url, hubs = cluster.url, cluster.hubs
    clients = [Client(f"u{n}", url) for n in range(CLIENTS)]
    tasks = []
    try:
        for client in clients:  # one at a time: leastconn spreads them two per hub
            tasks.append(asyncio.create_task(client.conn.run()))
            await _until(lambda c=client: c.conn.state == "online", 10)

        typed_at = 0.0

        async def talk(client: Client, n: int) -> None:
            nonlocal typed_at
            typed_at = time.monotonic()
            client.sent.append(client.conn.send(f"{client.user} says {n}", None))
            await asyncio.sleep(PACE)

        for n in range(KILL_AFTER):
            await asyncio.gather(*(talk(c, n) for c in clients))
        killed_at = time.monotonic()
        if failure is None:
            await asyncio.to_thread(cluster.redis.stop)
        else:
            hubs[0].send_signal(failure)  # mid-conversation: all six keep typing
        for n in range(KILL_AFTER, PER_CLIENT):  # the cut-off queue theirs in the outbox
            await asyncio.gather(*(talk(c, n) for c in clients))
        if failure is None:
            await asyncio.to_thread(cluster.redis.start)

        total = CLIENTS * PER_CLIENT
        await _until(
            lambda: all(len(c.received) >= total and not c.conn.pending for c in clients), 15
        )
        await asyncio.sleep(0.3)  # anything extra would show up now

        moved = [c for c in clients if c.went_offline_after(killed_at)]
        if failure is None:
            assert len(moved) == CLIENTS, [c.states for c in clients]
        else:
            assert 1 <= len(moved) < CLIENTS, [c.states for c in clients]
        every_id = {id for c in clients for id in c.sent}
        assert len(every_id) == total
        for client in clients:
            got = [event.message for event in client.received]
            assert [m.seq for m in got] == list(range(1, total + 1)), client.user
            assert {m.id for m in got} == every_id, client.user  # each one, exactly once
            for sender in clients:  # each sender's messages in the order it typed them
                assert [m.id for m in got if m.user == sender.user] == sender.sent
        async with Peer.open(url) as reader:  # the room itself holds each message once
            joined = await reader.join("lobby", "reader", since=0)
            assert sorted(m["id"] for m in joined["history"]) == sorted(every_id)
            assert joined["seq"] == total

        await _until(lambda: "hub1 is DOWN" in cluster.proxy_log(), 5)
        if failure is None:
            await _until(lambda: cluster.proxy_log().count(" is UP") >= 3, 5)
        reconnect = max(c.back_online_after(killed_at) for c in moved) - killed_at
        last = max(c.arrived[-1] for c in clients) - typed_at
        print(
            f"\nhaproxy failover ({failure.name if failure else 'redis restart'}): "
            f"{len(moved)} of {CLIENTS} clients cut off; "
            f"all back online (resumed on a live hub) {reconnect * 1000:.0f} ms after it; "
            f"the last of {total} messages reached all {CLIENTS} "
            f"{last * 1000:.0f} ms after it was typed"
        )
    finally:
        for client in clients:
            await client.conn.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    # The checks took the dead hub, and only it, out of the pool: the live
    # ones kept answering GET /healthz with 200 (anything else marks them down).
    # Without Redis every hub answers 503 and all go down, then come back.
    log = cluster.proxy_log()
    every_hub = {f"fer_hubs/hub{n}" for n in range(1, 4)}
    assert set(re.findall(r"Server (\S+) is DOWN", log)) == (
        every_hub if failure is None else {"fer_hubs/hub1"}
    ), log
    if failure is None:
        assert set(re.findall(r"Server (\S+) is UP", log)) == every_hub, log
