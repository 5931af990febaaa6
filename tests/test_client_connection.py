"""HubConnection without the UI, against a real hub on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from client_fixtures import free_port, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_tui.connection import (
    HubConnection,
    HubError,
    HubEvent,
    JoinedRoom,
    MessageReceived,
    PresenceChanged,
    StateChanged,
    TopicChanged,
)
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
            socket = bob.conn._ws
            assert socket is not None
            await socket.close()
            alice.conn.send("while bob was away", None)
            await wait_until(lambda: len(bob.received()) == 2, what="bob catches up")
            assert [m.text for m in bob.received()] == ["first", "while bob was away"]
            states = [e.state for e in bob.events if isinstance(e, StateChanged)]
            assert states.count("online") >= 2  # he did reconnect
            assert hub.url == url
        finally:
            await alice.close()
            await bob.close()


async def test_a_message_typed_as_the_link_returns_goes_after_the_queued_ones() -> None:
    # The race a failover opens: the user types the moment the room is back
    # online, before the queued messages have been resent.
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    events: list[HubEvent] = []

    def on_event(event: HubEvent) -> None:
        events.append(event)
        if isinstance(event, StateChanged) and event.state == "online":
            conn.send("typed as it came back", None)

    conn = HubConnection(url, "r", "alice", on_event, min_backoff=0.05, max_backoff=0.1)
    task = asyncio.create_task(conn.run())
    try:
        queued = [conn.send(f"queued {i}", None) for i in range(3)]
        async with serve_hub(HubConfig(host="127.0.0.1", port=port)):
            bob = Client(url, "bob")
            try:
                await wait_until(lambda: len(bob.received()) >= 4, what="all delivered")
                await wait_until(lambda: conn.pending == 0, what="all acknowledged")
                texts = [m.text for m in bob.received()]
                assert texts[:3] == [f"queued {i}" for i in range(3)]
                assert texts[3:] == ["typed as it came back"]
                assert [m.id for m in bob.received()][:3] == queued
            finally:
                await bob.close()
    finally:
        await conn.close()
        await asyncio.wait_for(task, 5)


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


# --- issue 20: direct messages, actions, nick, topic through the API -----------------


def events_of(client: Client, kind: type) -> list:
    return [e for e in client.events if isinstance(e, kind)]


async def test_a_direct_message_through_the_api_reaches_only_its_addressee() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        ana, bo, cy = Client(hub.url, "ana"), Client(hub.url, "bo"), Client(hub.url, "cy")
        try:
            await wait_until(lambda: ana.conn.state == bo.conn.state == cy.conn.state == "online")
            await wait_until(lambda: len(ana.conn.members) == 3)
            dm = ana.conn.send("only for bo", Emotion("happy", 0.8), to="bo")
            act = ana.conn.send("waves", Emotion("happy", 0.8, picked=True), action=True)
            await wait_until(lambda: len(cy.received()) == 1, what="the action")
            await wait_until(lambda: ana.conn.pending == 0, what="both acknowledged")
            assert [(m.id, m.to) for m in bo.received()] == [(dm, "bo"), (act, None)]
            (seen,) = cy.received()
            assert (seen.id, seen.action, seen.emotion) == (act, True, Emotion("happy", 0.8, True))
            assert [m.id for m in ana.received()] == [dm, act]
            assert ana.conn.last_seq == 1  # the DM took no seq
        finally:
            for client in (ana, bo, cy):
                await client.close()


async def test_a_direct_message_to_an_absent_member_is_refused_and_not_resent() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        ana = Client(hub.url, "ana")
        try:
            await wait_until(lambda: ana.conn.state == "online")
            dm = ana.conn.send("hello?", None, to="ghost")
            await wait_until(lambda: bool(events_of(ana, HubError)), what="the refusal")
            (error,) = events_of(ana, HubError)
            assert (error.error.code, error.error.id) == ("no_such_member", dm)
            assert ana.conn.pending == 0 and ana.conn.state == "online"
        finally:
            await ana.close()


async def test_set_nick_renames_and_a_reconnect_rejoins_under_the_new_name() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        ana, bo = Client(hub.url, "ana"), Client(hub.url, "bo")
        try:
            await wait_until(lambda: ana.conn.state == bo.conn.state == "online")
            assert ana.conn.set_nick("bo")  # taken: refused, the connection stays
            await wait_until(lambda: bool(events_of(ana, HubError)))
            assert events_of(ana, HubError)[0].error.code == "name_taken"
            assert ana.conn.state == "online" and ana.conn.user == "ana"
            assert ana.conn.set_nick("anna")
            await wait_until(lambda: ana.conn.user == "anna", what="the rename")
            renames = [e.presence for e in events_of(bo, PresenceChanged)]
            assert any(p.event == "nick" and (p.old, p.user) == ("ana", "anna") for p in renames)
            socket = ana.conn._ws
            assert socket is not None
            await socket.close()  # cut the socket: it must come back as anna
            await wait_until(lambda: len(events_of(ana, JoinedRoom)) == 2, what="the rejoin")
            assert events_of(ana, JoinedRoom)[-1].joined.user == "anna"
            assert sorted(m.user for m in ana.conn.members) == ["anna", "bo"]
        finally:
            await ana.close()
            await bo.close()


async def test_set_topic_reaches_everyone_and_the_next_join() -> None:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub:
        ana, bo = Client(hub.url, "ana"), Client(hub.url, "bo")
        try:
            await wait_until(lambda: ana.conn.state == bo.conn.state == "online")
            assert ana.conn.set_topic("lunch at noon")
            await wait_until(lambda: bool(events_of(bo, TopicChanged)))
            assert events_of(bo, TopicChanged) == [TopicChanged("r", "lunch at noon", "ana")]
            cy = Client(hub.url, "cy")
            await wait_until(lambda: bool(events_of(cy, JoinedRoom)))
            assert events_of(cy, JoinedRoom)[0].joined.topic == "lunch at noon"
            await cy.close()
        finally:
            await ana.close()
            await bo.close()


async def test_requests_while_offline_say_they_were_not_sent() -> None:
    conn = HubConnection(f"ws://127.0.0.1:{free_port()}", "r", "x", lambda e: None)
    assert not conn.set_nick("y")
    assert not conn.set_topic("t")
    assert not conn.request_history(None)
