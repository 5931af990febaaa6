"""Issue 20's frames against a real hub on 127.0.0.1: actions, direct messages, nick, topic.

Also the sans-I/O core's nick hook, and hypothesis fuzz of the new frames' parsers.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import Peer, hub
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_fixtures import redis_server

from fer_tui.emotions import LABELS
from hub import protocol
from hub.cluster import (
    ClusterHub,
    Event,
    JoinCall,
    JoinResult,
    SyncCall,
    SyncResult,
    decode_event,
    encode_event,
)
from hub.protocol import Emotion, HistoryRequest, Member, Nick, ProtocolError, Send, SetTopic
from hub.rooms import Broadcast, Call, Client, Hub, Reply
from hub.storage import SqliteStore

pytestmark = pytest.mark.timeout(60)


async def say(peer: Peer, id: str, text: str, **fields: Any) -> None:
    emotion = fields.pop("emotion", None)
    await peer.send(protocol.message_frame(id, text, emotion, **fields))


# --- actions and hand-picked emotions ----------------------------------------------


async def test_an_action_and_a_picked_emotion_reach_everyone_marked_as_such() -> None:
    async with hub() as running, Peer.open(running.url) as ana, Peer.open(running.url) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await say(ana, "a1", "waves", emotion=Emotion("happy", 1.0, picked=True), action=True)
        for peer in (ana, bo):
            frame = await peer.recv_type("message")
            assert frame["action"] is True and frame["to"] is None
            assert frame["text"] == "waves"
            assert frame["emotion"] == {"label": "happy", "confidence": 1.0, "picked": True}
        await say(ana, "a2", "plain", emotion=Emotion("sad", 0.5))
        frame = await bo.recv_type("message")
        assert frame["action"] is False and frame["emotion"] == {"label": "sad", "confidence": 0.5}
        parsed = protocol.parse_server_frame(json.dumps(frame))
        assert isinstance(parsed, protocol.ChatMessage) and not parsed.action


async def test_actions_and_picked_flags_survive_a_restart_in_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    async with hub(history_db=db) as running, Peer.open(running.url) as ana:
        await ana.join("lobby", "ana")
        await say(ana, "a1", "shrugs", emotion=Emotion("neutral", 0.9, picked=True), action=True)
        await ana.recv_type("message")
    async with hub(history_db=db) as running, Peer.open(running.url) as bo:
        (message,) = (await bo.join("lobby", "bo"))["history"]
        assert message["action"] is True
        assert message["emotion"]["picked"] is True


# --- direct messages -----------------------------------------------------------------


async def test_a_direct_message_reaches_its_addressee_and_the_sender_and_no_one_else() -> None:
    async with (
        hub() as running,
        Peer.open(running.url) as ana,
        Peer.open(running.url) as bo,
        Peer.open(running.url) as cy,
    ):
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await cy.join("lobby", "cy")
        await ana.drain(0.2)
        await bo.drain(0.2)
        await say(ana, "d1", "psst, bo", emotion=Emotion("surprise", 0.6), to="bo")
        for peer in (ana, bo):  # the addressee, and the sender's ack
            frame = await peer.recv_type("message")
            assert (frame["id"], frame["to"], frame["user"]) == ("d1", "bo", "ana")
        assert await cy.silent(0.5)
        # Not in history: a later joiner, and cy rejoining from scratch, never see it.
        async with Peer.open(running.url) as dee:
            assert (await dee.join("lobby", "dee"))["history"] == []
        # The member list did not take the DM's emotion either.
        await say(cy, "c1", "anyone?")
        await cy.recv_type("message")
        async with Peer.open(running.url) as eve:
            joined = await eve.join("lobby", "eve")
            emotions = {m["user"]: m["emotion"] for m in joined["members"]}
            assert emotions["ana"] is None


async def test_a_direct_message_resent_is_acknowledged_again_and_delivered_once() -> None:
    async with hub() as running, Peer.open(running.url) as ana, Peer.open(running.url) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await ana.drain(0.2)
        await say(ana, "d1", "once", to="bo")
        await say(ana, "d1", "once", to="bo")
        assert [f["id"] for f in await ana.drain(0.4) if f["type"] == "message"] == ["d1", "d1"]
        assert [f["id"] for f in await bo.drain(0.4) if f["type"] == "message"] == ["d1"]


async def test_a_direct_message_to_someone_absent_is_refused_naming_it() -> None:
    async with hub() as running, Peer.open(running.url) as ana:
        await ana.join("lobby", "ana")
        await say(ana, "d1", "hello?", to="nobody")
        error = await ana.expect_error("no_such_member")
        assert error["id"] == "d1"
        await say(ana, "m1", "still here")  # the connection stays
        assert (await ana.recv_type("message"))["id"] == "m1"


# --- nick ------------------------------------------------------------------------------


async def test_nick_renames_and_tells_everyone_and_later_messages_carry_the_new_name() -> None:
    async with hub() as running, Peer.open(running.url) as ana, Peer.open(running.url) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await ana.drain(0.2)
        await ana.send(protocol.nick_frame("anna"))
        for peer in (ana, bo):
            frame = await peer.recv_type("presence")
            assert (frame["event"], frame["user"], frame["old"]) == ("nick", "anna", "ana")
            assert sorted(m["user"] for m in frame["members"]) == ["anna", "bo"]
        await say(ana, "m1", "renamed")
        assert (await bo.recv_type("message"))["user"] == "anna"
        assert (await ana.recv_type("message"))["id"] == "m1"
        # The old name is free again; a DM reaches the new one.
        async with Peer.open(running.url) as other:
            await other.join("lobby", "ana")
            await say(bo, "d1", "hi anna", to="anna")
            assert (await ana.recv_type("message"))["to"] == "anna"
            assert await other.silent(0.3)


async def test_nick_to_a_taken_name_is_refused_and_keeps_the_connection() -> None:
    async with hub() as running, Peer.open(running.url) as ana, Peer.open(running.url) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await ana.send(protocol.nick_frame("bo"))
        await ana.expect_error("name_taken")
        await ana.send({"type": "nick", "user": " spaced "})
        await ana.expect_error("bad_field")
        await say(ana, "m1", "still ana")
        assert (await bo.recv_type("message"))["user"] == "ana"


class NameBoundTokens:
    """A token check like hub.auth's JWT one: a token names the one user it admits."""

    def __init__(self) -> None:
        self.checked: list[tuple[str | None, str, str]] = []

    def authorize(self, token: str | None, user: str, room: str) -> None:
        self.checked.append((token, user, room))
        if token != f"token-for-{user}":
            raise PermissionError("token is not for this name")


def test_the_auth_check_rechecks_a_rename_with_the_join_token_or_a_new_one() -> None:
    auth = NameBoundTokens()
    core = Hub(auth=auth)
    client = core.connect(0.0)
    core.receive_text(client, protocol.join_frame("lobby", "ana", token="token-for-ana"), 0.0)
    refused = core.receive_text(client, protocol.nick_frame("bo"), 1.0)
    assert [json.loads(a.frame)["code"] for a in refused if isinstance(a, Reply)] == [
        "unauthorized"
    ]
    assert client.user == "ana" and not client.closing
    renamed = core.receive_text(client, protocol.nick_frame("bo", token="token-for-bo"), 2.0)
    assert isinstance(renamed[0], Broadcast) and client.user == "bo"
    assert auth.checked[-2:] == [("token-for-ana", "bo", "lobby"), ("token-for-bo", "bo", "lobby")]


# --- topic -----------------------------------------------------------------------------


async def test_a_topic_is_broadcast_and_sent_on_join_even_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    async with hub(history_db=db) as running, Peer.open(running.url) as ana:
        assert (await ana.join("lobby", "ana"))["topic"] is None
        await ana.send(protocol.topic_frame("  release day  "))
        frame = await ana.recv_type("topic")
        assert (frame["room"], frame["topic"], frame["user"]) == ("lobby", "release day", "ana")
    async with hub(history_db=db) as running, Peer.open(running.url) as bo:
        assert (await bo.join("lobby", "bo"))["topic"] == "release day"
        await bo.send(protocol.topic_frame(""))
        assert (await bo.recv_type("topic"))["topic"] is None
    async with hub(history_db=db) as running, Peer.open(running.url) as cy:
        assert (await cy.join("lobby", "cy"))["topic"] is None


async def test_a_bad_topic_is_refused_and_nothing_changes() -> None:
    async with hub() as running, Peer.open(running.url) as ana:
        await ana.join("lobby", "ana")
        await ana.send(protocol.topic_frame("x" * (protocol.MAX_TOPIC_CHARS + 1)))
        await ana.expect_error("text_too_long")
        await ana.send(protocol.topic_frame("two\nlines"))
        await ana.expect_error("bad_field")
        async with Peer.open(running.url) as bo:
            assert (await bo.join("lobby", "bo"))["topic"] is None


async def test_requests_before_a_join_are_refused() -> None:
    async with hub() as running, Peer.open(running.url) as ana:
        for frame in (
            protocol.nick_frame("x"),
            protocol.topic_frame("t"),
            protocol.history_request_frame(None),
        ):
            await ana.send(frame)
            await ana.expect_error("not_joined")


# --- parsers ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
fields = st.dictionaries(
    st.sampled_from(["user", "token", "topic", "before", "limit", "to", "action", "id", "text"]),
    json_values,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["nick", "topic", "history", "message"]), fields)
def test_new_client_frames_parse_or_fail_with_a_code(kind: str, body: dict[str, Any]) -> None:
    raw = json.dumps({**body, "type": kind})
    try:
        frame = protocol.parse_client_frame(raw)
    except ProtocolError as exc:
        # control_char/bad_unicode: the character rules of issue 16 (hub/protocol.py on main).
        assert exc.code in {
            "bad_field", "text_too_long", "bad_emotion", "frame_too_big",
            "control_char", "bad_unicode",
        }  # fmt: skip
        return
    if isinstance(frame, Nick):
        assert isinstance(frame.user, str) and 1 <= len(frame.user) <= protocol.MAX_USER_CHARS
    elif isinstance(frame, SetTopic):
        assert len(frame.topic) <= protocol.MAX_TOPIC_CHARS and frame.topic.isprintable()
    elif isinstance(frame, HistoryRequest):
        assert 1 <= frame.limit <= protocol.MAX_HISTORY_PAGE
        assert frame.before is None or frame.before >= 0
    else:
        assert isinstance(frame, Send) and isinstance(frame.action, bool)
        assert not (frame.action and frame.to is not None)


names = st.text(st.characters(whitelist_categories=("L", "N", "P")), min_size=1, max_size=32)
emotions = st.none() | st.builds(
    Emotion, st.sampled_from(LABELS), st.floats(0.0, 1.0), st.booleans()
)


@settings(max_examples=200, deadline=None)
@given(
    names,
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cf")), max_size=200).filter(str.strip),
    emotions,
    st.booleans(),
    st.none() | names,
)
def test_encoded_client_messages_parse_back_to_what_was_sent(
    id: str, text: str, emotion: Emotion | None, action: bool, to: str | None
) -> None:
    action = action and to is None
    frame = protocol.parse_client_frame(
        protocol.message_frame(id, text, emotion, action=action, to=to)
    )
    assert frame == Send(id, text, emotion, action, to)


@settings(max_examples=200, deadline=None)
@given(names, names, st.text(max_size=100), st.floats(0, 2e9), st.none() | names, emotions)
def test_server_frames_round_trip(
    room: str, user: str, topic: str, ts: float, to: str | None, emotion: Emotion | None
) -> None:
    message = protocol.ChatMessage(room, 3, "id", user, "hi", emotion, ts, action=to is None, to=to)
    assert protocol.parse_server_frame(protocol.chat_frame(message)) == message
    assert protocol.chat_frame(message) == protocol.encode(message.to_json())
    page = protocol.parse_server_frame(protocol.history_frame(room, 7, [message], False))
    assert page == protocol.History(room, 7, (message,), False)
    changed = protocol.Topic(room, topic or None, user, ts)
    assert protocol.parse_server_frame(protocol.topic_changed_frame(changed)) == changed
    nick = protocol.parse_server_frame(protocol.nick_presence_frame(user, room, []))
    assert nick == protocol.Presence("nick", user, (), old=room)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["topic", "history", "presence", "error", "joined"]), fields)
def test_malformed_server_frames_fail_with_protocol_error_only(
    kind: str, body: dict[str, Any]
) -> None:
    with contextlib.suppress(ProtocolError):  # anything else escaping fails the test
        protocol.parse_server_frame(json.dumps({**body, "type": kind}))


# --- the same across two hubs on one real Redis ---------------------------------------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as server:
        yield server.url


@contextlib.asynccontextmanager
async def two_hubs(redis_url: str) -> AsyncIterator[tuple[str, str]]:
    options = {"redis_url": redis_url, "redis_heartbeat": 0.2}
    async with hub(**options) as first, hub(**options) as second:
        yield first.url, second.url


@pytest.mark.slow
async def test_a_direct_message_crosses_hubs_to_its_addressee_only(redis_url: str) -> None:
    async with (
        two_hubs(redis_url) as (a, b),
        Peer.open(a) as ana,
        Peer.open(b) as bo,
        Peer.open(a) as cy,
        Peer.open(b) as dee,
    ):
        session = protocol.new_session()
        await ana.join("lobby", "ana", session=session)
        for peer, name in ((bo, "bo"), (cy, "cy"), (dee, "dee")):
            await peer.join("lobby", name)
        await say(ana, "d1", "psst, bo", to="bo")
        for peer in (ana, bo):
            frame = await peer.recv_type("message")
            assert (frame["id"], frame["to"], frame["user"]) == ("d1", "bo", "ana")
        for peer in (cy, dee):
            assert not [f for f in await peer.drain(0.5) if f["type"] == "message"]
        async with Peer.open(b) as late:
            assert (await late.join("lobby", "eve"))["history"] == []
        await say(ana, "d2", "hello?", to="ghost")
        assert (await ana.expect_error("no_such_member"))["id"] == "d2"
    async with two_hubs(redis_url) as (a, b), Peer.open(b) as ana_again, Peer.open(a) as bo:
        # A resend through another hub is acknowledged again, delivered to no one new.
        await bo.join("lobby", "bo")
        await ana_again.join("lobby", "ana", session=session)
        await say(ana_again, "d1", "psst, bo", to="bo")
        assert (await ana_again.recv_type("message"))["id"] == "d1"
        assert not [f for f in await bo.drain(0.5) if f["type"] == "message"]


@pytest.mark.slow
async def test_nick_and_topic_cross_hubs(redis_url: str) -> None:
    async with two_hubs(redis_url) as (a, b), Peer.open(a) as ana, Peer.open(b) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await ana.send(protocol.nick_frame("bo"))
        await ana.expect_error("name_taken")  # held on the other hub
        await ana.send(protocol.nick_frame("anna"))
        for peer in (ana, bo):
            frame = await peer.recv_type("presence")
            assert (frame["event"], frame["user"], frame["old"]) == ("nick", "anna", "ana")
        await say(ana, "m1", "renamed", emotion=Emotion("happy", 0.9, picked=True), action=True)
        frame = await bo.recv_type("message")
        assert (frame["user"], frame["action"], frame["emotion"]["picked"]) == ("anna", True, True)
        assert (await ana.recv_type("message"))["id"] == "m1"
        await say(bo, "d1", "hi anna", to="anna")
        assert (await ana.recv_type("message"))["to"] == "anna"
        async with Peer.open(b) as taken:
            await taken.send(protocol.join_frame("lobby", "anna"))
            await taken.expect_error("name_taken")
        await bo.send(protocol.topic_frame("cross-hub topic"))
        for peer in (ana, bo):
            frame = await peer.recv_type("topic")
            assert (frame["topic"], frame["user"]) == ("cross-hub topic", "bo")
    async with two_hubs(redis_url) as (a, _), Peer.open(a) as cy:
        joined = await cy.join("lobby", "cy")
        assert joined["topic"] == "cross-hub topic"  # kept in Redis across hub restarts
        assert joined["history"][-1]["action"] is True


# --- the cluster core's new events, driven by hand (no Redis) ---------------------------


def cluster_member(core: ClusterHub, user: str, pos: int | None) -> Client:
    """A local member of room "r"; ``pos`` None leaves its join pending."""
    client = core.connect(0.0)
    (action,) = core.receive_text(client, protocol.join_frame("r", user, None, None, "s"), 0.0)
    assert isinstance(action, Call) and isinstance(action.request, JoinCall)
    if pos is not None:
        core.join_done(action.request, JoinResult(pos=pos, members=(Member(user, None),)))
    return client


def delivered(actions: list[Any], client: Client) -> list[dict[str, Any]]:
    return [
        json.loads(a.frame)
        for a in actions
        if (isinstance(a, Reply) and a.client is client)
        or (isinstance(a, Broadcast) and client in a.clients)
    ]


@given(
    pos=st.integers(1, 2**40),
    seq=st.integers(0, 2**40),
    user=names,
    old=names,
    to=names,
)
def test_new_events_round_trip(pos: int, seq: int, user: str, old: str, to: str) -> None:
    dm = protocol.chat_frame(protocol.ChatMessage("r", seq, "i", user, "x\ny", None, 1.0, to=to))
    topic = protocol.topic_changed_frame(protocol.Topic("r", "t o p", user, 2.0))
    members = (Member(user, Emotion("happy", 0.5, picked=True)),)
    for event in (
        Event(pos, "d", seq=seq, frame=dm),
        Event(pos, "t", seq=0, frame=topic),
        Event(pos, "n", user=user, old=old, conn="h.1", members=members),
    ):
        assert decode_event(encode_event(event)) == event


def test_a_direct_message_event_reaches_only_the_local_addressee_and_sender() -> None:
    core = ClusterHub(hub_id="h1")
    ana, bo, cy = (cluster_member(core, name, 1) for name in ("ana", "bo", "cy"))
    dee = core.connect(0.0)  # the addressee of the second DM, its join still pending
    (pending,) = core.receive_text(dee, protocol.join_frame("r", "dee", None, None, "s"), 0.0)
    assert isinstance(pending, Call)
    to_bo = protocol.ChatMessage("r", 0, "d1", "ana", "psst", None, 1.0, to="bo")
    actions = core.event("r", Event(2, "d", seq=0, frame=protocol.chat_frame(to_bo)))
    assert [f["id"] for f in delivered(actions, ana)] == ["d1"]
    assert [f["id"] for f in delivered(actions, bo)] == ["d1"]
    assert delivered(actions, cy) == [] and delivered(actions, dee) == []
    to_dee = protocol.ChatMessage("r", 0, "d2", "cy", "hi dee", None, 1.0, to="dee")
    actions = core.event("r", Event(3, "d", seq=0, frame=protocol.chat_frame(to_dee)))
    assert [f["id"] for f in delivered(actions, cy)] == ["d2"]
    assert delivered(actions, ana) == delivered(actions, bo) == []
    # dee's join lands before the DM: it gets it from its buffer, right after "joined".
    result = JoinResult(pos=2, members=(Member("dee", None),))
    frames = delivered(core.join_done(pending.request, result), dee)
    assert [(f["type"], f.get("id")) for f in frames] == [("joined", None), ("message", "d2")]
    # A nick event renames in presence; the room's seq did not move for the DMs.
    renamed = core.event("r", Event(4, "n", user="bea", old="bo", conn="x", members=()))
    assert delivered(renamed, cy)[0] == {
        "type": "presence", "event": "nick", "user": "bea", "old": "bo", "members": [],
    }  # fmt: skip
    assert core.rooms["r"].seq == 0


def test_a_topic_set_while_the_subscription_was_down_comes_with_the_sync() -> None:
    core = ClusterHub(hub_id="h1")
    ana = cluster_member(core, "ana", 1)
    (sync,) = core.event("r", Event(3, "j", user="bo", conn="h2.1", members=()))  # pos 2 lost
    assert isinstance(sync, Call) and isinstance(sync.request, SyncCall)
    topic = protocol.topic_changed_frame(protocol.Topic("r", "missed", "bo", 2.0))
    result = SyncResult(
        pos=3, seq=0, members=(Member("ana", None),), messages=(), topic_frame=topic
    )
    frames = delivered(core.sync_done(sync.request, result), ana)
    assert [f["topic"] for f in frames if f["type"] == "topic"] == ["missed"]
    # The same topic again (a later sync) is not repeated.
    (again,) = core.resync()
    assert isinstance(again, Call)
    assert not [
        f for f in delivered(core.sync_done(again.request, result), ana) if f["type"] == "topic"
    ]


# --- a DM never reaches a third member, whatever joins, leaves and renames come first ----

ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "nick", "dm", "say"]),
        st.integers(0, 4),  # which connection
        st.sampled_from(["ana", "bo", "cy", "dee", "eve"]),  # a name: to join, take or address
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_a_direct_message_reaches_only_its_addressee_and_sender(steps: list) -> None:
    core = Hub()
    clients = [core.connect(0.0) for _ in range(5)]
    for i, (op, who, name) in enumerate(steps):
        client = clients[who]
        if op == "join" and client.room is None and not client.closing:
            actions = core.receive_text(client, protocol.join_frame("r", name), float(i))
        elif op == "leave" and client.room is not None:
            actions = core.disconnect(client)
            clients[who] = core.connect(float(i))
        elif op == "nick":
            actions = core.receive_text(client, protocol.nick_frame(name), float(i))
        elif op == "dm":
            frame = protocol.message_frame(f"d{i}", "secret", to=name)
            sender, actions = client.user, core.receive_text(client, frame, float(i))
        else:
            actions = core.receive_text(client, protocol.message_frame(f"m{i}", "hi"), float(i))
        for action in actions:
            if not isinstance(action, (Reply, Broadcast)):
                continue
            frame = json.loads(action.frame)
            if frame["type"] != "message" or frame["to"] is None:
                continue
            assert op == "dm" and frame["user"] == sender and frame["to"] == name
            receivers = action.clients if isinstance(action, Broadcast) else [action.client]
            assert {c.user for c in receivers} <= {sender, name}
            assert len(receivers) == len(set(map(id, receivers)))  # once each
            assert core.rooms["r"].members[name].client in receivers
            assert client in receivers  # the sender's ack
        members = core.rooms["r"].members if "r" in core.rooms else {}
        assert all(m.client.user == user for user, m in members.items())


def test_a_history_file_from_before_the_flags_still_opens_and_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
            " user TEXT NOT NULL, text TEXT NOT NULL, label TEXT, confidence REAL,"
            " ts REAL NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID"
        )
        db.execute("INSERT INTO messages VALUES ('r', 1, 'a', 'ana', 'old', 'sad', 0.5, 1.0)")
    store = SqliteStore(path)
    try:
        assert store.load("r", 10) == (
            1,
            [protocol.ChatMessage("r", 1, "a", "ana", "old", Emotion("sad", 0.5), 1.0)],
        )
        new = protocol.ChatMessage(
            "r", 2, "b", "ana", "waves", Emotion("happy", 1.0, picked=True), 2.0, action=True
        )
        assert store.append(new) is None
        assert store.page("r", None, 10) == ([store.load("r", 10)[1][0], new], True)
        assert store.topic("r") is None
    finally:
        store.close()
    # The messages table kept its columns: an older hub can still write the file.
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO messages VALUES ('r', 3, 'c', 'bo', 'hi', NULL, NULL, 3.0)")
    store = SqliteStore(path)
    try:
        assert [(m.seq, m.action) for m in store.load("r", 10)[1]] == [
            (1, False),
            (2, True),
            (3, False),
        ]
    finally:
        store.close()
