"""The hub's HTTP side: /healthz, /metrics and the per-IP limits, on the real hub on 127.0.0.1.

``/metrics`` is parsed with prometheus_client's own parser. The per-IP limits
are tested with ``ip_limit_exempt=()``: by default loopback is exempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hub_fixtures import WAIT, Peer, hub
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub import protocol
from hub.metrics import error_code
from hub.server import IpGate, RunningHub


async def http_get(url: str, path: str) -> tuple[int, dict[str, str], str]:
    """One plain HTTP/1.1 GET on the hub's port: (status, headers, body)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port), WAIT
    )
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).decode()
        status_line, *lines = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT)
        return int(status_line.split()[1]), headers, body.decode()
    finally:
        writer.close()


async def scrape(running: RunningHub) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    status, headers, body = await http_get(running.url, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- /healthz -----------------------------------------------------------------------


async def test_healthz_is_200_while_serving_and_the_port_still_speaks_websocket() -> None:
    async with hub() as running:
        status, _, body = await http_get(running.url, "/healthz")
        assert (status, body) == (200, "ok\n")
        async with Peer.open(running.url) as peer:
            await peer.join("r", "ana")
        status, _, _ = await http_get(running.url, "/healthz?probe=1")
        assert status == 200


async def test_healthz_is_503_while_redis_is_unreachable(tmp_path: Path) -> None:
    redis_fixtures = pytest.importorskip("redis_fixtures")
    with redis_fixtures.redis_server(tmp_path) as server:
        async with hub(redis_url=server.url, redis_heartbeat=0.2) as running:
            assert (await http_get(running.url, "/healthz"))[0] == 200
            async with Peer.open(running.url) as peer:
                await peer.join("r", "ana")
                await peer.say("m1", "over redis")
                await peer.recv_type("message")
            samples = await scrape(running)
            assert value(samples, "fer_hub_redis_round_trip_seconds_count") >= 2  # beats, join
            assert value(samples, "fer_hub_redis_round_trip_seconds_sum") > 0
            server.stop()
            async with asyncio.timeout(20):
                while (await http_get(running.url, "/healthz"))[0] != 503:
                    await asyncio.sleep(0.1)
            status, _, body = await http_get(running.url, "/healthz")
            assert (status, body) == (503, "redis unreachable\n")
            server.start()
            async with asyncio.timeout(20):
                while (await http_get(running.url, "/healthz"))[0] != 200:
                    await asyncio.sleep(0.1)


# --- /metrics -----------------------------------------------------------------------


async def test_metrics_count_connections_rooms_frames_and_refusals() -> None:
    async with hub() as running, hub() as other:
        async with Peer.open(running.url) as ana, Peer.open(running.url) as bo:
            await ana.join("r1", "ana")
            await bo.join("r2", "bo")
            await ana.say("m1", "hello")
            await ana.recv_type("message")
            await ana.send('{"type":"message","id":"m2","text":"\\u001b[2J"}')
            await ana.expect_error("control_char")
            await ana.send("not json")
            await ana.expect_error("bad_json")
            samples = await scrape(running)
            assert value(samples, "fer_hub_connections") == 2
            assert value(samples, "fer_hub_rooms") == 2
            # 2 joins + 1 message + 2 refused frames; out: 2 joined + ack + 2 errors.
            assert value(samples, "fer_hub_frames_received_total") == 5
            assert value(samples, "fer_hub_frames_sent_total") == 5
            assert value(samples, "fer_hub_refusals_total", code="control_char") == 1
            assert value(samples, "fer_hub_refusals_total", code="bad_json") == 1
            assert value(samples, "fer_hub_slow_consumer_evictions_total") == 0
            assert ("fer_hub_redis_round_trip_seconds_count", ()) not in samples  # no --redis
        # A second hub in the same process has its own registry: nothing of the first.
        theirs = await scrape(other)
        assert value(theirs, "fer_hub_frames_received_total") == 0
        assert value(theirs, "fer_hub_connections") == 0
        async with asyncio.timeout(WAIT):
            while value(await scrape(running), "fer_hub_connections") != 0:
                await asyncio.sleep(0.05)


def test_error_code_reads_every_error_frame_and_nothing_else() -> None:
    for code in protocol.ErrorCode.__args__:  # type: ignore[attr-defined]
        assert error_code(protocol.error_frame(code, 'say "why"')) == code
    message = protocol.ChatMessage("r", 1, "i", "u", '{"type":"error","code":"x"}', None, 1.0)
    assert error_code(protocol.chat_frame(message)) is None


# --- per-IP limits ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws(url: str) -> AsyncIterator[None]:
    async with connect(url, open_timeout=WAIT, close_timeout=1):
        yield


async def status_of_refused_handshake(url: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with ws(url):
            pass
    return info.value


async def test_handshakes_per_ip_per_minute_get_429_with_retry_after() -> None:
    async with hub(max_handshakes_per_ip=3, ip_limit_exempt=()) as running:
        for _ in range(3):
            async with ws(running.url):
                pass
        refused = await status_of_refused_handshake(running.url)
        assert refused.response.status_code == 429
        assert 1 <= int(refused.response.headers["Retry-After"]) <= 20  # one slot is 20 s
        samples = await scrape(running)  # operator endpoints do not count against the limit
        assert value(samples, "fer_hub_http_refusals_total", reason="ip_rate") == 1


async def test_open_connections_per_ip_get_503_and_free_up_on_close() -> None:
    async with hub(max_connections_per_ip=2, ip_limit_exempt=()) as running:
        async with ws(running.url), ws(running.url):
            refused = await status_of_refused_handshake(running.url)
            assert refused.response.status_code == 503
            assert b"too many open connections" in refused.response.body
        async with asyncio.timeout(WAIT):  # released when each connection is gone
            while running.gate.open:
                await asyncio.sleep(0.02)
        async with ws(running.url), ws(running.url):
            pass
        samples = await scrape(running)
        assert value(samples, "fer_hub_http_refusals_total", reason="ip_connections") == 1


async def test_loopback_is_exempt_by_default() -> None:
    async with hub(max_handshakes_per_ip=1, max_connections_per_ip=1) as running:
        async with ws(running.url), ws(running.url), ws(running.url):
            pass
        assert not running.gate.open


def test_ip_gate_keys_and_limits() -> None:
    gate = IpGate(per_minute=2, max_open=1, exempt=["10.0.0.0/8"])
    assert gate.key("10.1.2.3") is None
    assert gate.key("192.0.2.7") == "192.0.2.7"
    assert gate.key("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4-mapped counts as IPv4
    # One IPv6 host usually holds a whole /64: its addresses share one budget.
    assert gate.key("2001:db8:1:2::1") == gate.key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert gate.key("2001:db8:1:3::1") != gate.key("2001:db8:1:2::1")
    assert gate.admit("a", 0.0) is None
    gate.opened("a")
    assert gate.admit("a", 0.1) == (503, "ip_connections", 0.0)  # no token spent on it
    gate.closed("a")
    assert gate.admit("a", 0.2) is None
    refused = gate.admit("a", 0.3)
    assert refused is not None and refused[:2] == (429, "ip_rate")
    assert 29 < refused[2] <= 30  # a new slot every 30 s at 2 per minute
    assert gate.admit("a", 31.0) is None
    assert gate.admit("b", 31.0) is None  # another address has its own budget
