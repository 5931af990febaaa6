"""Control characters: refused in every client string, neutralised in stored history.

Against the real hub on 127.0.0.1 (and a real ``redis-server`` for ``--redis``);
the validator itself is checked exhaustively over every code point and with
hypothesis over arbitrary strings.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import Peer, hub
from hypothesis import example, given
from hypothesis import strategies as st

from hub import protocol
from hub.protocol import ChatMessage, ProtocolError
from hub.storage import SqliteStore

#: The code points the issue lists, plus lone surrogates (``bad_unicode``).
C0 = set(range(0x00, 0x20))
C1 = set(range(0x80, 0xA0))
BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))
CONTROLS = C0 | {0x7F} | C1 | BIDI
SURROGATES = set(range(0xD800, 0xE000))
TEXT_ALLOWED = {0x0A, 0x09}  # newline and tab, in chat text only

# OSC 0 (window title), CSI 2J (clear screen), OSC 52 (clipboard), C1 CSI, bidi override.
ATTACKS = [
    "\x1b]0;PWNED\x07hi",
    "\x1b[2J\x1b[HCLEARED",
    "\x1b]52;c;cHduZWQ=\x07",
    "\x9b2J",
    "abc\u202edcba",
    "\x7f",
]


def frame_with(field: str, value: str) -> str:
    """A client frame whose ``field`` is ``value``, JSON-escaped (surrogates survive)."""
    if field in ("text", "id"):
        obj: dict[str, Any] = {"type": "message", "id": "m1", "text": "hello"}
    else:
        obj = {"type": "join", "room": "r", "user": "ana", "session": "s", "token": None}
    obj[field] = value
    return json.dumps(obj)  # ensure_ascii: "\ud800" stays an escape, as a client may send it


def refusal(raw: str) -> str | None:
    try:
        protocol.parse_client_frame(raw)
    except ProtocolError as exc:
        return exc.code
    return None


# --- the validator ------------------------------------------------------------------


def test_every_code_point_is_refused_exactly_when_listed() -> None:
    # Exhaustive over all of Unicode, for names and for text.
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        for text in (False, True):
            code: str | None = None
            try:
                protocol.check_chars("f", f"a{char}b", text=text)
            except ProtocolError as exc:
                code = exc.code
            if point in SURROGATES:
                assert code == "bad_unicode", hex(point)
            elif point in CONTROLS and not (text and point in TEXT_ALLOWED):
                assert code == "control_char", hex(point)
            else:
                assert code is None, hex(point)


@given(st.text(st.characters(), min_size=1, max_size=32), st.sampled_from(["text", "user"]))
@example(value="\x1f\ud800", field="text")  # a control before a surrogate: still bad_unicode
def test_frames_are_refused_with_control_char_exactly_when_they_hold_one(
    value: str, field: str
) -> None:
    points = {ord(c) for c in value}
    allowed = TEXT_ALLOWED if field == "text" else set()
    code = refusal(frame_with(field, value))
    if points & SURROGATES:
        assert code == "bad_unicode"
    elif points & (CONTROLS - allowed):
        assert code == "control_char"
    else:
        assert code not in ("control_char", "bad_unicode")


@given(st.text(st.characters(), max_size=60))
def test_neutralize_leaves_nothing_refused_and_clean_text_alone(value: str) -> None:
    for text in (False, True):
        inert = protocol.neutralize(value, text=text)
        protocol.check_chars("f", inert, text=text)  # raises if anything refused is left
        assert len(inert) == len(value)
        assert all(a == b or b == "\ufffd" for a, b in zip(value, inert, strict=True))


def test_the_ascii_shortcut_finds_exactly_what_the_scan_finds_in_every_code_point() -> None:
    # inert_chat_frame checks an ASCII frame by str.isprintable instead of the regex.
    for point in range(sys.maxunicode + 1):
        frame = f'{{"text":"a{chr(point)}b"}}'
        scanned = protocol._REFUSED_RAW.search(frame) is None
        assert protocol._has_no_refused_code_point(frame) == scanned, hex(point)


@given(
    st.text(st.characters(), max_size=60) | st.text(st.sampled_from('a"\\u0019\x7f'), max_size=40)
)
def test_inert_chat_frame_passes_a_frame_on_only_when_nothing_refused_is_in_it(value: str) -> None:
    frame = json.dumps({"type": "message", "text": value}, ensure_ascii=False)
    for raw in (frame, json.dumps({"type": "message", "text": value})):  # raw and \u-escaped
        clean = protocol._REFUSED_RAW.search(raw) is None and (
            protocol._REFUSED_ESCAPED.search(raw) is None
        )
        assert protocol._has_no_refused_code_point(raw) == clean
        if clean:
            assert protocol.inert_chat_frame(raw) is raw


def test_the_issues_escapes_are_refused_in_every_field() -> None:
    for attack in ATTACKS:
        for field in ("text", "id", "room", "user", "session", "token"):
            assert refusal(frame_with(field, attack)) == "control_char", (field, attack)
    assert refusal(frame_with("text", "two\nlines\tand a tab")) is None


# --- the real hub -----------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
async def test_hub_refuses_text_keeps_the_connection_and_broadcasts_nothing(attack: str) -> None:
    async with hub() as running:
        async with Peer.open(running.url) as ana, Peer.open(running.url) as bo:
            await ana.join("r", "ana")
            await bo.join("r", "bo")
            await ana.drain(0.1)
            await ana.send(frame_with("text", attack))
            error = await ana.expect_error("control_char")
            assert "U+" in error["message"]
            assert await bo.silent(0.3)  # not broadcast
            await ana.say("ok1", "still here")  # the connection is kept
            assert (await bo.recv_type("message"))["text"] == "still here"
        async with Peer.open(running.url) as cy:
            history = (await cy.join("r", "cy"))["history"]
            assert [m["text"] for m in history] == ["still here"]  # not stored


@pytest.mark.parametrize("field", ["room", "user", "session", "token"])
async def test_hub_refuses_a_join_with_a_control_and_lets_a_clean_one_in(field: str) -> None:
    async with hub() as running, Peer.open(running.url) as peer:
        await peer.send(frame_with(field, "x\x1b[2Jx"))
        await peer.expect_error("control_char")
        await peer.join("r", "ana")  # same connection, clean join
        assert "r" in running.core.rooms and "x\x1b[2Jx" not in running.core.rooms


async def test_hub_refuses_a_lone_surrogate_and_the_room_stays_usable() -> None:
    # Before: the surrogate was stored, and every later join failed with 1011.
    async with hub() as running:
        async with Peer.open(running.url) as ana:
            await ana.join("r", "ana")
            await ana.send('{"type":"message","id":"s1","text":"hi \\ud800"}')
            await ana.expect_error("bad_unicode")
        async with Peer.open(running.url) as bo:
            assert (await bo.join("r", "bo"))["history"] == []


async def test_control_characters_count_as_strikes() -> None:
    async with hub(limits={"max_strikes": 3}) as running, Peer.open(running.url) as peer:
        await peer.join("r", "ana")
        for i in range(2):
            await peer.send(frame_with("text", f"\x1b[{i}m"))
            await peer.expect_error("control_char")
        await peer.send(frame_with("text", "\x1b[2J"))
        await peer.expect_error("too_many_errors")
        assert (await peer.expect_close())[0] == protocol.CLOSE_POLICY_VIOLATION


# --- history that predates the rule ---------------------------------------------------

BAD_TEXT = "\x1b]0;PWNED\x07\x1b[2J\x9b31m two\nlines \u202eevil"
BAD_USER = "mal\u202elory\x1b"


def assert_inert(frame: dict[str, Any]) -> None:
    """No refused code point in any string of a decoded server frame."""

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, str):
            protocol.check_chars(key, value, text=key == "text")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)

    walk(frame)


async def test_sqlite_history_written_before_the_rule_goes_out_inert(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    SqliteStore(path).close()  # the hub's schema
    with sqlite3.connect(path) as db:  # rows as an older hub (or another program) wrote them
        db.execute(
            "INSERT INTO messages VALUES ('r', 1, 'old1', ?, ?, 'happy', 0.9, 1.0)",
            (BAD_USER, BAD_TEXT),
        )
        db.execute(
            "INSERT INTO messages VALUES ('r', 2, 'old2', 'bo', CAST(x'68698AFF' AS TEXT),"
            " NULL, NULL, 2.0)"
        )  # not UTF-8 at all
    async with hub(history_db=path) as running, Peer.open(running.url) as peer:
        joined = await peer.join("r", "ana")
        assert_inert(joined)
        first, second = joined["history"]
        assert first["text"] == protocol.neutralize(BAD_TEXT, text=True)
        assert first["text"].startswith("\ufffd]0;PWNED\ufffd\ufffd[2J\ufffd31m two\nlines")
        assert first["user"] == "mal\ufffdlory\ufffd"
        assert second["text"].startswith("hi\ufffd")
        await peer.say("new", "after")  # the room goes on from seq 2
        assert (await peer.recv_type("message"))["seq"] == 3


async def test_redis_history_written_before_the_rule_goes_out_inert(tmp_path: Path) -> None:
    redis_fixtures = pytest.importorskip("redis_fixtures")
    import redis.asyncio as aioredis

    with redis_fixtures.redis_server(tmp_path) as server:
        old = ChatMessage("r", 1, "old1", BAD_USER, BAD_TEXT, protocol.Emotion("sad", 0.5), 1.0)
        # An older hub's encoder: C0 as \u escapes, C1 and bidi raw.
        frame = json.dumps(old.to_json(), ensure_ascii=False, separators=(",", ":"))
        client = aioredis.Redis.from_url(server.url)
        await client.xadd("fer:room:{r}:log", {"m": frame}, id="1-0")
        await client.set("fer:room:{r}:seq", 1)
        running_hub = hub(redis_url=server.url, redis_heartbeat=0.2)
        async with running_hub as running, Peer.open(running.url) as peer:
            joined = await peer.join("r", "ana")
            assert_inert(joined)
            (message,) = joined["history"]
            assert message["text"] == protocol.neutralize(BAD_TEXT, text=True)
            # A live event another (older) hub published is made inert too.
            live = old.to_json() | {"seq": 2, "id": "old2"}
            raw = json.dumps(live, ensure_ascii=False, separators=(",", ":"))
            pos = int(await client.incr("fer:room:{r}:pos"))
            await client.set("fer:room:{r}:seq", 2)
            await client.execute_command("SPUBLISH", "fer:room:{r}:events", f"{pos} m 2 {raw}")
            got = await peer.recv_type("message")
            assert_inert(got)
            assert got["text"] == protocol.neutralize(BAD_TEXT, text=True)
        await client.aclose()


def test_a_topic_with_control_characters_is_refused_and_a_stored_one_goes_out_inert() -> None:
    raw = protocol.encode({"type": "topic", "topic": "\x1b]0;PWNED\x07"})
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse_client_frame(raw)
    assert refused.value.code == "control_char"
    stored = protocol.Topic("r\x9b", "\x1b[2Jcleared\u202e", "bo\x07", 1.0)
    for frame in (
        protocol.topic_changed_frame(stored),
        protocol.joined_frame("r", "ana", [], [], 0, topic=stored.topic),
        protocol.nick_presence_frame("ana\x1b", "bo\x9b", []),
        protocol.refusal_frame("no_such_member", "no \x1b[2J here", "id\x07"),
    ):
        assert_inert(protocol.decode(frame))
