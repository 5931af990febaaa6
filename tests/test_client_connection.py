"""HubConnection without the UI, against a real hub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from client_fixtures import free_port, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_tui.connection import HubConnection, HubEvent, MessageReceived, StateChanged
from fer_tui.emotions import LABELS
from hub import protocol
from hub.protocol import Emotion
from hub.server import HubConfig, serve_hub

pytestmark = pytest.mark.timeout(120)

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300
).filter(lambda t: t.strip() != "")
emotions = st.none() | st.builds(
    Emotion, st.sampled_from(LABELS), st.floats(0.0, 1.0, allow_nan=False)
)


class Client:
    """A HubConnection running as a task, with the events it reported."""

    def __init__(self, url: str, user: str, room: str = "r") -> None:
        self.events: list[HubEvent] = []
        self.conn = HubConnection(url, room, user, self.events.append, min_backoff=0.05)
        self.task = asyncio.create_task(self.conn.run())

    def received(self) -> list[protocol.ChatMessage]:
        return [e.message for e in self.events if isinstance(e, MessageReceived)]

    async def close(self) -> None:
        await self.conn.close()
        await asyncio.wait_for(self.task, 5)


async def exchange(batch: list[tuple[str, Emotion | None]]) -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        alice, bob = Client(hub.url, "alice"), Client(hub.url, "bob")
        try:
            await wait_until(lambda: alice.conn.state == bob.conn.state == "online")
            ids = [alice.conn.send(text, emotion) for text, emotion in batch]
            await wait_until(lambda: len(bob.received()) == len(batch), what="all delivered")
            await wait_until(lambda: alice.conn.pending == 0, what="all acknowledged")
            got = bob.received()
            assert [m.id for m in got] == ids  # in order, once each
            # Controls are sent as U+FFFD (the hub refuses them); the rest is intact.
            sent = [(protocol.neutralize(text, text=True), emotion) for text, emotion in batch]
            assert [(m.text, m.emotion) for m in got] == sent
            assert [m.id for m in alice.received()] == ids
            assert all(m.user == "alice" for m in got)
        finally:
            await alice.close()
            await bob.close()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(texts, emotions), min_size=1, max_size=30))
def test_any_text_and_emotion_arrive_intact_in_order(batch) -> None:
    # Up to 30 at once: more than the hub's burst of 20, so pacing is exercised too.
    asyncio.run(exchange(batch))


async def test_fast_typing_is_paced_not_refused() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        alice, bob = Client(hub.url, "alice"), Client(hub.url, "bob")
        try:
            await wait_until(lambda: alice.conn.state == bob.conn.state == "online")
            for i in range(protocol.RATE_BURST + 5):
                alice.conn.send(f"line {i}", None)
            await wait_until(lambda: len(bob.received()) == protocol.RATE_BURST + 5)
            errors = [e for e in alice.events if type(e).__name__ == "HubError"]
            assert errors == []
        finally:
            await alice.close()
            await bob.close()


async def test_stricter_hub_rate_limit_loses_nothing() -> None:
    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, rate_per_second=20.0, rate_burst=3)
    async with serve_hub(HubConfig(host="127.0.0.1", port=0, limits=limits)) as hub:
        alice, bob = Client(hub.url, "alice"), Client(hub.url, "bob")
        try:
            await wait_until(lambda: alice.conn.state == bob.conn.state == "online")
            ids = [alice.conn.send(f"m{i}", None) for i in range(8)]
            await wait_until(lambda: alice.conn.pending == 0, what="all acknowledged")
            assert sorted(m.id for m in bob.received()) == sorted(ids)
            assert len(bob.received()) == 8  # refused ones resent, none doubled
        finally:
            await alice.close()
            await bob.close()


async def test_resume_with_since_after_a_dropped_connection() -> None:
    port = free_port()
    config = HubConfig(host="127.0.0.1", port=port, history_db=None)
    url = f"ws://127.0.0.1:{port}"
    async with serve_hub(config) as hub:
        alice, bob = Client(url, "alice"), Client(url, "bob")
        try:
            await wait_until(lambda: alice.conn.state == bob.conn.state == "online")
            alice.conn.send("first", None)
            await wait_until(lambda: len(bob.received()) == 1)
            # Cut bob's socket under him; meanwhile alice talks on.
            await bob.conn._ws.close()
            alice.conn.send("while bob was away", None)
            await wait_until(lambda: len(bob.received()) == 2, what="bob catches up")
            assert [m.text for m in bob.received()] == ["first", "while bob was away"]
            states = [e.state for e in bob.events if isinstance(e, StateChanged)]
            assert states.count("online") >= 2  # he did reconnect
            assert hub.url == url
        finally:
            await alice.close()
            await bob.close()


async def test_unreachable_hub_keeps_retrying_and_queues() -> None:
    events: list[HubEvent] = []
    conn = HubConnection(
        f"ws://127.0.0.1:{free_port()}", "r", "x", events.append, min_backoff=0.05, max_backoff=0.1
    )
    task = asyncio.create_task(conn.run())
    try:
        conn.send("queued", None)
        await wait_until(
            lambda: sum(isinstance(e, StateChanged) and e.state == "offline" for e in events) >= 3,
            what="several retries",
        )
        assert conn.pending == 1
        assert "hub not reachable" in next(
            e.detail for e in events if isinstance(e, StateChanged) and e.state == "offline"
        )
    finally:
        await conn.close()
        await asyncio.wait_for(task, 5)
    assert conn.state == "stopped"


async def test_name_taken_stops_with_a_clear_reason() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        first = Client(hub.url, "ada")
        try:
            await wait_until(lambda: first.conn.state == "online")
            second = Client(hub.url, "ada")
            await asyncio.wait_for(second.task, 5)  # gives up instead of retrying forever
            assert second.conn.state == "stopped"
            last = [e for e in second.events if isinstance(e, StateChanged)][-1]
            assert "refused" in last.detail
            assert first.conn.state == "online"
        finally:
            await first.close()
