"""hub.protocol: validation codes, builders and the server-frame parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fer_tui.emotions import LABELS
from hub import protocol
from hub.protocol import ChatMessage, Emotion, Join, Member, ProtocolError, Send

# What the hub accepts and sends unchanged (other strings: tests/test_hub_security.py).
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
NAME_CHARS = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=_BIDI)
TEXT_CHARS = NAME_CHARS | st.sampled_from("\n\t")


def code_of(raw: str, limits: protocol.Limits = protocol.DEFAULT_LIMITS) -> str:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_client_frame(raw, limits)
    return info.value.code


def test_join_round_trip() -> None:
    raw = protocol.join_frame("lobby", "ana", since=3, token="t", session="s")
    assert protocol.parse_client_frame(raw) == Join("lobby", "ana", 3, "t", "s")
    assert json.loads(raw) == {
        "type": "join",
        "room": "lobby",
        "user": "ana",
        "since": 3,
        "token": "t",
        "session": "s",
    }


def test_message_round_trip() -> None:
    raw = protocol.message_frame("m1", "hi", Emotion("happy", 0.5))
    assert protocol.parse_client_frame(raw) == Send("m1", "hi", Emotion("happy", 0.5))
    assert protocol.parse_client_frame(protocol.message_frame("m2", "x")) == Send("m2", "x", None)


def test_join_without_optional_fields_is_accepted() -> None:
    # The join shape has no session; older clients may omit it.
    assert protocol.parse_client_frame('{"type":"join","room":"r","user":"u"}') == Join(
        "r", "u", None, None, None
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"type": "message", "id": "a", "text": NaN}', "bad_json"),
        ("{}", "bad_type"),
        ('{"type": "dance"}', "bad_type"),
        ('{"type": "join", "room": 5, "user": "u"}', "bad_field"),
        ('{"type": "join", "room": "", "user": "u"}', "bad_field"),
        ('{"type": "join", "room": " r", "user": "u"}', "bad_field"),
        ('{"type": "join", "room": "r", "user": "a\\nb"}', "control_char"),
        ('{"type": "join", "room": "r", "user": "u", "since": -1}', "bad_field"),
        ('{"type": "join", "room": "r", "user": "u", "since": true}', "bad_field"),
        ('{"type": "join", "room": "r", "user": "u", "since": 1.5}', "bad_field"),
        ('{"type": "join", "room": "r", "user": "u", "token": 1}', "bad_field"),
        ('{"type": "message", "id": "a"}', "bad_field"),
        ('{"type": "message", "id": "a", "text": "   "}', "bad_field"),
        ('{"type": "message", "id": 7, "text": "hi"}', "bad_field"),
        ('{"type": "message", "id": "a", "text": "hi", "emotion": "happy"}', "bad_emotion"),
        (
            '{"type": "message", "id": "a", "text": "hi", '
            '"emotion": {"label": "joy", "confidence": 0.5}}',
            "bad_emotion",
        ),
        (
            '{"type": "message", "id": "a", "text": "hi", '
            '"emotion": {"label": "happy", "confidence": 1.5}}',
            "bad_emotion",
        ),
        (
            '{"type": "message", "id": "a", "text": "hi", '
            '"emotion": {"label": "happy", "confidence": true}}',
            "bad_emotion",
        ),
    ],
)
def test_invalid_frames_get_precise_codes(raw: str, code: str) -> None:
    assert code_of(raw) == code


def test_text_and_frame_limits() -> None:
    limits = protocol.Limits(max_text_chars=10, max_frame_bytes=200)
    assert code_of(protocol.message_frame("a", "x" * 11), limits) == "text_too_long"
    assert protocol.parse_client_frame(protocol.message_frame("a", "x" * 10), limits)
    # Multi-byte characters count in bytes for the frame limit.
    assert code_of(protocol.message_frame("a", "é" * 150), limits) == "frame_too_big"


def test_every_label_is_accepted_and_nothing_else() -> None:
    for label in LABELS:
        frame = protocol.message_frame("a", "hi", Emotion(label, 1.0))
        assert protocol.parse_client_frame(frame).emotion == Emotion(label, 1.0)
    frame = protocol.message_frame("a", "hi", Emotion("contempt", 1.0))
    assert code_of(frame) == "bad_emotion"


def test_parse_server_frames() -> None:
    message = ChatMessage("r", 4, "m", "ana", "hi", Emotion("sad", 0.25), 12.5)
    assert protocol.parse_server_frame(protocol.chat_frame(message)) == message
    joined = protocol.parse_server_frame(
        protocol.joined_frame("r", "ana", [Member("ana", None)], [message], 4, truncated=True)
    )
    assert joined == protocol.Joined(
        "r", "ana", (Member("ana", None),), (message,), 4, truncated=True
    )
    presence = protocol.parse_server_frame(
        protocol.presence_frame("leave", "bo", [Member("ana", Emotion("sad", 0.25))])
    )
    assert presence == protocol.Presence("leave", "bo", (Member("ana", Emotion("sad", 0.25)),))
    error = protocol.parse_server_frame(protocol.error_frame("name_taken", "taken"))
    assert error == protocol.ErrorFrame("name_taken", "taken")
    with pytest.raises(ProtocolError):
        protocol.parse_server_frame('{"type": "message", "seq": 1}')
    with pytest.raises(ProtocolError):
        protocol.parse_server_frame('{"type": "mystery"}')


def test_fresh_ids_and_sessions_differ() -> None:
    assert len({protocol.new_message_id() for _ in range(100)}) == 100
    assert len({protocol.new_session() for _ in range(100)}) == 100


@given(st.text(max_size=300))
def test_arbitrary_text_is_accepted_or_refused_with_a_code(raw: str) -> None:
    try:
        frame = protocol.parse_client_frame(raw)
    except ProtocolError as exc:
        assert exc.code in protocol.ErrorCode.__args__  # type: ignore[attr-defined]
    else:
        assert isinstance(frame, (Join, Send))


@given(
    st.text(TEXT_CHARS, min_size=1, max_size=1000).filter(str.strip),  # fits the frame limit
    st.sampled_from(LABELS),
    st.floats(min_value=0, max_value=1),
)
def test_valid_messages_survive_encoding(text: str, label: str, confidence: float) -> None:
    raw = protocol.message_frame("id", text, Emotion(label, confidence))
    assert protocol.parse_client_frame(raw) == Send("id", text, Emotion(label, confidence))


@given(
    st.text(NAME_CHARS, max_size=40),
    st.integers(min_value=0, max_value=2**63),
    st.text(NAME_CHARS, max_size=40),
    st.text(NAME_CHARS, max_size=40),
    st.text(TEXT_CHARS, max_size=300),
    st.none() | st.builds(Emotion, st.sampled_from(LABELS), st.floats(min_value=0, max_value=1)),
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=0, max_value=2**40),
)
def test_chat_frame_is_exactly_the_generic_encoding(
    room: str, seq: int, id: str, user: str, text: str, emotion: Emotion | None, ts: float
) -> None:
    # chat_frame is hand-written for speed; it must not drift from encode().
    message = ChatMessage(room, seq, id, user, text, emotion, ts)
    frame = protocol.chat_frame(message)
    assert frame == protocol.encode(message.to_json())
    assert protocol.parse_server_frame(frame) == message
