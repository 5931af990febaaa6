"""Issue 20's frames against a real hub on 127.0.0.1: actions, direct messages, nick, topic.

Also the sans-I/O core's nick hook, and hypothesis fuzz of the new frames' parsers.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import Peer, hub
from hypothesis import given, settings
from hypothesis import strategies as st

from fer_tui.emotions import LABELS
from hub import protocol
from hub.protocol import Emotion, HistoryRequest, Nick, ProtocolError, Send, SetTopic
from hub.rooms import Broadcast, Hub, Reply

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


def test_the_authorize_hook_rechecks_a_rename_with_the_join_token_or_a_new_one() -> None:
    checked: list[tuple[str | None, str, str]] = []

    def authorize(token: str | None, user: str, room: str) -> None:
        checked.append((token, user, room))
        if token != f"token-for-{user}":
            raise PermissionError("token is not for this name")

    core = Hub(authorize=authorize)
    client = core.connect(0.0)
    core.receive_text(client, protocol.join_frame("lobby", "ana", token="token-for-ana"), 0.0)
    refused = core.receive_text(client, protocol.nick_frame("bo"), 1.0)
    assert [json.loads(a.frame)["code"] for a in refused if isinstance(a, Reply)] == [
        "unauthorized"
    ]
    assert client.user == "ana" and not client.closing
    renamed = core.receive_text(client, protocol.nick_frame("bo", token="token-for-bo"), 2.0)
    assert isinstance(renamed[0], Broadcast) and client.user == "bo"
    assert checked == [("token-for-ana", "bo", "lobby"), ("token-for-bo", "bo", "lobby")]


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
        assert exc.code in {"bad_field", "text_too_long", "bad_emotion", "frame_too_big"}
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
    st.text(max_size=200).filter(str.strip),
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
