"""Wire protocol between ``fer_tui`` clients and the hub: the one place for it.

Every frame is a JSON object in a WebSocket *text* frame; ``docs/protocol.md``
describes each shape. Both sides import this module, so a field, a limit or an
error code is spelled out here only.

How a client uses it::

    from hub import protocol

    session = protocol.new_session()           # once per client run; keep it
    ws = await websockets.asyncio.client.connect(
        url, max_size=protocol.MAX_SERVER_FRAME_BYTES)
    await ws.send(protocol.join_frame(room, user, since=last_seq, token=token,
                                      session=session))
    frame = protocol.parse_server_frame(await ws.recv())
    # -> Joined | ChatMessage | Presence | ErrorFrame | Topic | History;
    #    raises ProtocolError
    await ws.send(protocol.message_frame(protocol.new_message_id(), text,
                                         protocol.Emotion("happy", 0.91)))

A member may also send ``nick_frame``, ``topic_frame`` and
``history_request_frame``, and ``message_frame(..., action=True)`` (a /me) or
``message_frame(..., to=NAME)`` (a direct message); see the section at the end.

The sender's own :class:`ChatMessage` (same ``id``) is its acknowledgement.
After a reconnect, join again with ``since`` = the highest ``seq`` seen and the
same ``session``, then resend every unacknowledged message with its original
``id``: the hub acknowledges a duplicate again and never broadcasts it twice.

The hub side uses :func:`parse_client_frame` and the ``*_frame`` encoders for
server frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

from .labels import LABELS

__all__ = [
    "DEFAULT_LIMITS",
    "ChatMessage",
    "ClientFrame",
    "Emotion",
    "ErrorCode",
    "ErrorFrame",
    "Join",
    "Joined",
    "Limits",
    "Member",
    "Presence",
    "ProtocolError",
    "Send",
    "ServerFrame",
    "chat_frame",
    "chat_message_from_json",
    "check_chars",
    "decode",
    "encode",
    "error_frame",
    "inert_chat_frame",
    "join_frame",
    "joined_frame",
    "message_frame",
    "neutralize",
    "new_message_id",
    "new_session",
    "parse_client_frame",
    "parse_server_frame",
    "presence_frame",
]

# --- limits -----------------------------------------------------------------

#: Largest text frame the hub reads, in bytes (UTF-8). Larger: error + close 1009.
MAX_FRAME_BYTES: Final = 8 * 1024
#: Longest chat text, in characters.
MAX_TEXT_CHARS: Final = 2000
#: Longest room name, in characters.
MAX_ROOM_CHARS: Final = 64
#: Longest user name, in characters.
MAX_USER_CHARS: Final = 32
#: Longest client-chosen message ``id``, in characters.
MAX_ID_CHARS: Final = 64
#: Longest session secret, in characters.
MAX_SESSION_CHARS: Final = 128
#: Longest token, in characters: room for a signed JWT (RS256 with a ``rooms`` list).
MAX_TOKEN_CHARS: Final = 4096
#: Largest frame the hub sends (the ``joined`` history is trimmed to fit):
#: clients pass it to websockets' ``connect(..., max_size=...)``.
MAX_SERVER_FRAME_BYTES: Final = 1024 * 1024
#: Messages of history a room keeps and sends to a joining client.
HISTORY_SIZE: Final = 200
#: Token bucket: sustained messages per second per connection ...
RATE_PER_SECOND: Final = 5.0
#: ... and how many may come at once.
RATE_BURST: Final = 20
#: Consecutive refused frames after which the hub closes with 1008.
MAX_STRIKES: Final = 10
#: Rooms one hub holds (each keeps its history while the hub runs).
MAX_ROOMS: Final = 10_000
#: Seconds a new connection has to send its join.
JOIN_TIMEOUT: Final = 10.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Every limit the hub enforces; each has a ``fer-hub`` flag."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_text_chars: int = MAX_TEXT_CHARS
    max_room_chars: int = MAX_ROOM_CHARS
    max_user_chars: int = MAX_USER_CHARS
    max_id_chars: int = MAX_ID_CHARS
    history_size: int = HISTORY_SIZE
    rate_per_second: float = RATE_PER_SECOND
    rate_burst: int = RATE_BURST
    max_strikes: int = MAX_STRIKES
    max_rooms: int = MAX_ROOMS
    join_timeout: float = JOIN_TIMEOUT


DEFAULT_LIMITS: Final = Limits()

# --- error codes ----------------------------------------------------------------

ErrorCode: TypeAlias = Literal[
    "bad_json",  # not JSON, or not a JSON object
    "bad_type",  # missing or unknown "type"
    "bad_field",  # a field is missing, of the wrong type or out of range
    "bad_emotion",  # emotion is not null nor {"label": one of LABELS, "confidence": 0..1}
    "text_too_long",  # text longer than max_text_chars
    "frame_too_big",  # frame larger than max_frame_bytes (then close 1009)
    "binary_frame",  # binary frames are not part of the protocol (then close 1003)
    "not_joined",  # "message" before "join"
    "join_timeout",  # no join within join_timeout seconds (then close 1008)
    "already_joined",  # a second "join" on the same connection
    "control_char",  # a string holds a control or bidi character (see check_chars)
    "bad_unicode",  # a string holds a lone surrogate: not Unicode text
    "unauthorized",  # wrong, missing or expired token; name or room not allowed (close 1008)
    "name_taken",  # another live session holds this name in this room
    "room_limit",  # the hub holds max_rooms rooms; join an existing one
    "no_such_member",  # a direct message's "to" is not in the room
    "rate_limited",  # token bucket empty; the message was dropped, resend it later
    "too_many_errors",  # max_strikes refused frames in a row (then close 1008)
    "session_replaced",  # the same session joined on a new connection (then close 1000)
    "slow_consumer",  # the client read too slowly (then close 1008); rejoin with since
    "unavailable",  # the hub cannot reach its shared storage (--redis): resend later
]

#: Close codes the hub uses (RFC 6455).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # hub shutting down
CLOSE_UNSUPPORTED_DATA: Final = 1003  # binary frame
CLOSE_POLICY_VIOLATION: Final = 1008  # token, abuse, slow consumer
CLOSE_MESSAGE_TOO_BIG: Final = 1009  # frame too big
CLOSE_TRY_AGAIN_LATER: Final = 1013  # a join while the shared storage is unreachable


class ProtocolError(ValueError):
    """A frame broke the protocol; ``code`` is one of :data:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


# --- data -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Emotion:
    """An expression label from :data:`hub.labels.LABELS` and its confidence."""

    label: str
    confidence: float
    picked: bool = False  # chosen by hand for one message, not read from the camera

    def to_json(self) -> dict[str, Any]:
        if self.picked:
            return {"label": self.label, "confidence": self.confidence, "picked": True}
        return {"label": self.label, "confidence": self.confidence}


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A room member and the emotion of their latest message."""

    user: str
    emotion: Emotion | None

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "emotion": _emotion_json(self.emotion)}


@dataclasses.dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message as the hub broadcasts it, stamped with room, user, seq and ts."""

    room: str
    seq: int
    id: str
    user: str
    text: str
    emotion: Emotion | None
    ts: float
    action: bool = False  # a /me action: text is what the user does
    to: str | None = None  # a direct message to this member: never in history

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "message",
            "room": self.room,
            "seq": self.seq,
            "id": self.id,
            "user": self.user,
            "text": self.text,
            "emotion": _emotion_json(self.emotion),
            "action": self.action,
            "to": self.to,
            "ts": self.ts,
        }


@dataclasses.dataclass(frozen=True)
class Joined:
    """Hub → client answer to a join. ``truncated``: history older than ``since`` is gone."""

    room: str
    user: str
    members: tuple[Member, ...]
    history: tuple[ChatMessage, ...]
    seq: int
    truncated: bool = False
    topic: str | None = None


@dataclasses.dataclass(frozen=True)
class Presence:
    """Hub → members when someone joins, leaves or changes name (``old`` → ``user``)."""

    event: Literal["join", "leave", "nick"]
    user: str
    members: tuple[Member, ...]
    old: str | None = None


@dataclasses.dataclass(frozen=True)
class ErrorFrame:
    """Hub → client refusal."""

    code: str
    message: str
    id: str | None = None  # the refused message's id, when the refusal is about one


@dataclasses.dataclass(frozen=True)
class Join:
    """Client → hub: enter ``room`` as ``user``."""

    room: str
    user: str
    since: int | None
    token: str | None
    session: str | None


@dataclasses.dataclass(frozen=True)
class Send:
    """Client → hub: a chat message."""

    id: str
    text: str
    emotion: Emotion | None
    action: bool = False
    to: str | None = None


ClientFrame: TypeAlias = "Join | Send | Nick | SetTopic | HistoryRequest"
ServerFrame: TypeAlias = "Joined | ChatMessage | Presence | ErrorFrame | Topic | History"

# --- JSON -------------------------------------------------------------------


def encode(obj: Mapping[str, Any]) -> str:
    """Serialize a frame compactly (UTF-8 kept as is)."""
    return _ENCODER.encode(obj)


def decode(raw: str | bytes) -> dict[str, Any]:
    """Parse a frame into a JSON object; raise :exc:`ProtocolError` otherwise."""
    try:
        if isinstance(raw, str):
            obj = _DECODER.decode(raw)
        else:  # json.loads detects UTF-16/32 too
            obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "frame must be a JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/json.loads with options build a new coder on every call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
#: JSON string literal of ``str``, exactly as :func:`encode` writes it (C speedup).
_string: Final = json.encoder.encode_basestring


# --- client → hub -----------------------------------------------------------


def new_session() -> str:
    """Return a fresh per-session secret for :func:`join_frame`."""
    return secrets.token_urlsafe(24)


def new_message_id() -> str:
    """Return a fresh, unique message ``id`` for :func:`message_frame`."""
    return uuid.uuid4().hex


def join_frame(
    room: str,
    user: str,
    since: int | None = None,
    token: str | None = None,
    session: str | None = None,
) -> str:
    """Encode a ``join`` frame."""
    return encode(
        {
            "type": "join",
            "room": room,
            "user": user,
            "since": since,
            "token": token,
            "session": session,
        }
    )


def message_frame(
    id: str,
    text: str,
    emotion: Emotion | None = None,
    *,
    action: bool = False,
    to: str | None = None,
) -> str:
    """Encode a client ``message`` frame: a /me ``action``, a direct message ``to`` a member."""
    frame: dict[str, Any] = {
        "type": "message",
        "id": id,
        "text": text,
        "emotion": _emotion_json(emotion),
    }
    if action:
        frame["action"] = True
    if to is not None:
        frame["to"] = to
    return encode(frame)


def parse_client_frame(raw: str, limits: Limits = DEFAULT_LIMITS) -> ClientFrame:
    """Validate a client frame; raise :exc:`ProtocolError` with a precise code."""
    if len(raw) > limits.max_frame_bytes and len(raw.encode()) > limits.max_frame_bytes:
        raise ProtocolError("frame_too_big", f"frame exceeds {limits.max_frame_bytes} bytes")
    obj = decode(raw)
    kind = obj.get("type")
    if kind == "join":
        since = obj.get("since")
        if since is not None and (not _is_int(since) or since < 0):
            raise ProtocolError("bad_field", "since must be a non-negative integer or null")
        return Join(
            room=_name(obj, "room", limits.max_room_chars),
            user=_name(obj, "user", limits.max_user_chars),
            since=since,
            token=_optional_str(obj, "token", MAX_TOKEN_CHARS),
            session=_optional_str(obj, "session", MAX_SESSION_CHARS),
        )
    if kind == "message":
        text = obj.get("text")
        if not isinstance(text, str):
            raise ProtocolError("bad_field", "text must be a string")
        if len(text) > limits.max_text_chars:
            raise ProtocolError(
                "text_too_long", f"text has {len(text)} characters; limit {limits.max_text_chars}"
            )
        check_chars("text", text, text=True)
        if not text.strip():
            raise ProtocolError("bad_field", "text must not be blank")
        return Send(
            id=_name(obj, "id", limits.max_id_chars),
            text=text,
            emotion=_parse_emotion(obj.get("emotion")),
            **_message_extras(obj, limits),
        )
    if kind in _CHAT_FRAME_PARSERS:
        return _CHAT_FRAME_PARSERS[kind](obj, limits)
    if kind is None:
        raise ProtocolError("bad_type", "frame has no type")
    raise ProtocolError("bad_type", f"unknown frame type {str(kind)[:40]!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(obj: Mapping[str, Any], field: str, limit: int) -> str:
    """A required short identifier: printable, no surrounding spaces, 1..limit chars."""
    value = obj.get(field)
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"{field} must be a string")
    if not 1 <= len(value) <= limit:
        raise ProtocolError("bad_field", f"{field} must have 1 to {limit} characters")
    check_chars(field, value)
    if not value.isprintable() or value != value.strip():
        raise ProtocolError(
            "bad_field", f"{field} must be printable, without surrounding whitespace"
        )
    return value


def _optional_str(obj: Mapping[str, Any], field: str, limit: int) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError("bad_field", f"{field} must be a string of at most {limit} characters")
    check_chars(field, value)
    return value


# Code points refused in every client string: C0 controls, DEL, C1 controls
# and the bidi embeddings, overrides and isolates. A terminal acts on the
# first three (ESC starts OSC 0/52/8 and CSI sequences; C1 CSI/OSC/DCS need no
# ESC), and bidi controls make a name or line read as something it is not
# (CVE-2021-42574). Chat text may hold newlines and tabs, nothing else of these.
# Lone surrogates too: one survives JSON decoding ("\ud800") but cannot be
# encoded as UTF-8, so stored it would break every frame that carries it.
_REFUSED_IN_NAME: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_REFUSED_IN_TEXT: Final = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


def check_chars(field: str, value: str, *, text: bool = False) -> None:
    """Raise :exc:`ProtocolError` if ``value`` holds a code point no client string may hold.

    ``control_char``: a C0 control (chat ``text`` may hold ``\n`` and ``\t``),
    DEL, a C1 control (U+0080-U+009F) or a bidi control (U+202A-U+202E,
    U+2066-U+2069). ``bad_unicode``: a lone surrogate (U+D800-U+DFFF).
    """
    found = (_REFUSED_IN_TEXT if text else _REFUSED_IN_NAME).search(value)
    if found is None:
        return
    # A lone surrogate anywhere wins over a control before it: the string is
    # not Unicode text at all, whichever refused code point comes first.
    surrogate = _SURROGATE.search(value, found.start())
    if surrogate is not None:
        point = ord(surrogate.group())
        raise ProtocolError("bad_unicode", f"{field} holds lone surrogate U+{point:04X}")
    point = ord(found.group())
    raise ProtocolError(
        "control_char", f"{field} holds control character U+{point:04X} at {found.start()}"
    )


def neutralize(value: str, *, text: bool = False) -> str:
    """Return ``value`` with each code point :func:`check_chars` refuses replaced by U+FFFD.

    For strings the hub did not validate itself (history stored before the
    rule): the hub sends them inert. A clean string costs one regex scan.
    """
    pattern = _REFUSED_IN_TEXT if text else _REFUSED_IN_NAME
    if pattern.search(value) is None:
        return value
    return pattern.sub("\ufffd", value)


# What a refused code point looks like inside an encoded frame: raw (C1, bidi,
# surrogates; raw C0 is invalid JSON) or as the \u escape JSON encoders write.
_REFUSED_RAW: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_REFUSED_ESCAPED: Final = re.compile(
    r"\\u(?:00[01]|007[fF]|00[89]|202[a-eA-E]|206[6-9]|[dD][89a-fA-F])"
)


def _has_no_refused_code_point(frame: str) -> bool:
    """True if no code point :func:`neutralize` refuses is in ``frame``, raw or ``\\u``-escaped.

    An ASCII frame (JSON with ``ensure_ascii``: nearly every one) is checked by
    ``str.isprintable``, which refuses exactly the ASCII part of
    :data:`_REFUSED_RAW` (``\\x00``-``\\x1f``, ``\\x7f``) in C, faster than the
    regex scan that any other frame takes.
    """
    clean = frame.isprintable() if frame.isascii() else _REFUSED_RAW.search(frame) is None
    return clean and ("\\u" not in frame or _REFUSED_ESCAPED.search(frame) is None)


def inert_chat_frame(frame: str) -> str:
    """Return an encoded chat ``frame`` whose strings all pass :func:`neutralize`.

    For frames the hub forwards without building them, as a ``--redis`` hub
    forwards what another hub published. A frame with no trace of a refused
    code point (the usual case: one scan) is returned as is; one that does not
    parse is returned with its raw refused code points replaced.
    """
    if _has_no_refused_code_point(frame):
        return frame
    try:
        return chat_frame(chat_message_from_json(decode(frame)))
    except (ProtocolError, KeyError, TypeError, ValueError):
        return _REFUSED_RAW.sub("\ufffd", frame)


def _parse_emotion(value: object) -> Emotion | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("bad_emotion", "emotion must be an object or null")
    label = value.get("label")
    confidence = value.get("confidence")
    if label not in LABELS:
        raise ProtocolError("bad_emotion", f"emotion label must be one of {', '.join(LABELS)}")
    if (
        not isinstance(confidence, (int, float))
        or isinstance(confidence, bool)
        or not math.isfinite(confidence)
        or not 0.0 <= confidence <= 1.0
    ):
        raise ProtocolError("bad_emotion", "emotion confidence must be a number in 0..1")
    # The interned label: a log of 100k messages holds one copy of each, not 100k.
    return Emotion(sys.intern(label), float(confidence), _picked(value))


def _emotion_json(emotion: Emotion | None) -> dict[str, Any] | None:
    return None if emotion is None else emotion.to_json()


# --- hub → client -----------------------------------------------------------


def joined_frame(
    room: str,
    user: str,
    members: Sequence[Member],
    history: Sequence[ChatMessage],
    seq: int,
    truncated: bool = False,
    topic: str | None = None,
) -> str:
    """Encode the hub's answer to a join; every string passes :func:`neutralize`."""
    return encode(
        {
            "type": "joined",
            "room": neutralize(room),
            "user": neutralize(user),
            "members": [_member_json(m) for m in members],
            "history": [_message_json(m) for m in history],
            "seq": seq,
            "truncated": truncated,
            "topic": neutralize(topic) if topic else None,
        }
    )


def chat_frame(message: ChatMessage) -> str:
    """Encode a broadcast message: ``encode(message.to_json())``, byte for byte.

    Written by hand because it runs once per message of every room: this is
    several times faster than building the dict and encoding it. The numbers
    are finite (the hub stamps ``ts``; ``confidence`` is validated), which is
    all ``allow_nan=False`` would check; numbers are written with ``repr``, as
    json does.

    Every string passes :func:`neutralize`: with :func:`joined_frame` this is
    where each message the hub sends passes (live, resent, history, Redis
    sync; what a ``--redis`` hub forwards from others passes
    :func:`inert_chat_frame`), so history stored before control characters
    were refused goes out inert.
    """
    emotion = message.emotion
    if emotion is None:
        emotion_json = "null"
    else:
        emotion_json = (
            f'{{"label":{_string(emotion.label)},"confidence":{emotion.confidence!r}'
            f"{_PICKED if emotion.picked else ''}}}"
        )
    # The fields that follow "emotion" (issue 20), appended here to keep one f-string.
    emotion_json += _chat_fields(message)
    return (
        f'{{"type":"message","room":{_string(neutralize(message.room))},"seq":{message.seq!r}'
        f',"id":{_string(neutralize(message.id))},"user":{_string(neutralize(message.user))}'
        f',"text":{_string(neutralize(message.text, text=True))},"emotion":{emotion_json}'
        f',"ts":{message.ts!r}}}'
    )


def presence_frame(event: Literal["join", "leave"], user: str, members: Sequence[Member]) -> str:
    """Encode a presence event."""
    return encode(
        {
            "type": "presence",
            "event": event,
            "user": neutralize(user),
            "members": [_member_json(m) for m in members],
        }
    )


def _member_json(member: Member) -> dict[str, Any]:
    return {"user": neutralize(member.user), "emotion": _emotion_json(member.emotion)}


def _message_json(message: ChatMessage) -> dict[str, Any]:
    obj = message.to_json()
    for field in ("room", "id", "user"):
        obj[field] = neutralize(obj[field])
    obj["text"] = neutralize(obj["text"], text=True)
    return obj


def error_frame(code: ErrorCode, message: str) -> str:
    """Encode a refusal (``message`` may quote what the client sent: sent inert)."""
    return encode({"type": "error", "code": code, "message": neutralize(message)})


def parse_server_frame(raw: str | bytes) -> ServerFrame:
    """Decode a hub frame into a typed object; raise :exc:`ProtocolError` if malformed."""
    obj = decode(raw)
    try:
        kind = obj["type"]
        if kind == "message":
            return chat_message_from_json(obj)
        if kind == "joined":
            return Joined(
                room=obj["room"],
                user=obj["user"],
                members=tuple(_member(m) for m in obj["members"]),
                history=tuple(chat_message_from_json(m) for m in obj["history"]),
                seq=int(obj["seq"]),
                truncated=bool(obj.get("truncated", False)),
                topic=_optional_text(obj.get("topic")),
            )
        if kind == "presence":
            if obj["event"] not in ("join", "leave", "nick"):
                raise ValueError("bad presence event")
            return Presence(
                event=obj["event"],
                user=obj["user"],
                members=tuple(_member(m) for m in obj["members"]),
                old=_optional_text(obj.get("old")),
            )
        if kind == "error":
            return ErrorFrame(
                code=str(obj["code"]), message=str(obj["message"]), id=_optional_text(obj.get("id"))
            )
        if kind in _CHAT_SERVER_PARSERS:
            return _CHAT_SERVER_PARSERS[kind](obj)
    except (KeyError, TypeError, ValueError, ProtocolError) as exc:
        raise ProtocolError("bad_field", f"malformed {obj.get('type')!r} frame: {exc!r}") from None
    raise ProtocolError("bad_type", f"unknown frame type {str(obj.get('type'))[:40]!r}")


def chat_message_from_json(obj: Mapping[str, Any]) -> ChatMessage:
    """Build a :class:`ChatMessage` from a decoded ``message`` frame."""
    return ChatMessage(
        room=obj["room"],
        seq=int(obj["seq"]),
        id=obj["id"],
        user=obj["user"],
        text=obj["text"],
        emotion=_parse_emotion(obj.get("emotion")),
        ts=float(obj["ts"]),
        action=obj.get("action") is True,
        to=_optional_text(obj.get("to")),
    )


def _member(obj: Mapping[str, Any]) -> Member:
    return Member(user=obj["user"], emotion=_parse_emotion(obj.get("emotion")))


# --- chat frames: nick, topic, history paging, direct messages, actions ---------
#
# Issue 20's additions, kept together. A ``message`` may carry ``"action": true``
# (a /me action) or ``"to": NAME`` (a direct message, delivered only to NAME's
# connection and echoed to the sender, never stored in history); an emotion may
# carry ``"picked": true`` (chosen by hand, not read from the camera).

__all__ += [
    "MAX_HISTORY_PAGE",
    "MAX_TOPIC_CHARS",
    "History",
    "HistoryRequest",
    "Nick",
    "SetTopic",
    "Topic",
    "history_frame",
    "history_request_frame",
    "nick_frame",
    "nick_presence_frame",
    "refusal_frame",
    "topic_changed_frame",
    "topic_frame",
]

#: Longest room topic, in characters.
MAX_TOPIC_CHARS: Final = 300
#: Most messages one ``history`` request may ask for.
MAX_HISTORY_PAGE: Final = 200


@dataclasses.dataclass(frozen=True)
class Nick:
    """Client → hub: take the name ``user`` in the room (``token``: one whose sub is it)."""

    user: str
    token: str | None = None


@dataclasses.dataclass(frozen=True)
class SetTopic:
    """Client → hub: set the room's topic; ``""`` clears it."""

    topic: str


@dataclasses.dataclass(frozen=True)
class HistoryRequest:
    """Client → hub: up to ``limit`` messages with ``seq < before`` (None: the newest)."""

    before: int | None
    limit: int = MAX_HISTORY_PAGE


@dataclasses.dataclass(frozen=True)
class Topic:
    """A room's topic, who set it and when; ``topic`` is None when cleared."""

    room: str
    topic: str | None
    user: str
    ts: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "topic",
            "room": self.room,
            "topic": self.topic or None,
            "user": self.user,
            "ts": self.ts,
        }


@dataclasses.dataclass(frozen=True)
class History:
    """Hub → client: one page of a room's kept messages, oldest first, all ``seq < before``.

    ``complete``: the hub keeps nothing older than these.
    """

    room: str
    before: int | None
    messages: tuple[ChatMessage, ...]
    complete: bool


def nick_frame(user: str, token: str | None = None) -> str:
    """Encode a ``nick`` request; with JWT auth, ``token`` is one issued for ``user``."""
    frame: dict[str, Any] = {"type": "nick", "user": user}
    if token is not None:
        frame["token"] = token
    return encode(frame)


def topic_frame(topic: str) -> str:
    """Encode a request to set the room's topic (``""`` clears it)."""
    return encode({"type": "topic", "topic": topic})


def history_request_frame(before: int | None, limit: int = MAX_HISTORY_PAGE) -> str:
    """Encode a request for the messages before ``before`` (None: the newest)."""
    return encode({"type": "history", "before": before, "limit": limit})


def topic_changed_frame(topic: Topic) -> str:
    """Encode a topic broadcast; every string passes :func:`neutralize`."""
    return encode(
        {
            "type": "topic",
            "room": neutralize(topic.room),
            "topic": neutralize(topic.topic) if topic.topic else None,
            "user": neutralize(topic.user),
            "ts": topic.ts,
        }
    )


def history_frame(
    room: str, before: int | None, messages: Sequence[ChatMessage], complete: bool
) -> str:
    """Encode the answer to a ``history`` request; every string passes :func:`neutralize`."""
    return encode(
        {
            "type": "history",
            "room": neutralize(room),
            "before": before,
            "messages": [_message_json(m) for m in messages],
            "complete": complete,
        }
    )


def nick_presence_frame(user: str, old: str, members: Sequence[Member]) -> str:
    """Encode the presence event of ``old`` taking the name ``user`` (strings neutralised)."""
    return encode(
        {
            "type": "presence",
            "event": "nick",
            "user": neutralize(user),
            "old": neutralize(old),
            "members": [_member_json(m) for m in members],
        }
    )


def refusal_frame(code: ErrorCode, message: str, id: str) -> str:
    """Encode an error about the client's message ``id``: the client stops resending it."""
    return encode(
        {"type": "error", "code": code, "message": neutralize(message), "id": neutralize(id)}
    )


def _parse_nick(obj: Mapping[str, Any], limits: Limits) -> Nick:
    return Nick(
        user=_name(obj, "user", limits.max_user_chars),
        token=_optional_str(obj, "token", MAX_TOKEN_CHARS),
    )


def _parse_topic(obj: Mapping[str, Any], limits: Limits) -> SetTopic:
    topic = obj.get("topic")
    if not isinstance(topic, str):
        raise ProtocolError("bad_field", "topic must be a string")
    if len(topic) > MAX_TOPIC_CHARS:
        raise ProtocolError(
            "text_too_long", f"topic has {len(topic)} characters; limit {MAX_TOPIC_CHARS}"
        )
    check_chars("topic", topic)
    if not topic.isprintable():  # one line: no newline, tab or other separator
        raise ProtocolError("bad_field", "topic must be one line of printable characters")
    return SetTopic(topic.strip())


def _parse_history_request(obj: Mapping[str, Any], limits: Limits) -> HistoryRequest:
    before = obj.get("before")
    if before is not None and (not _is_int(before) or before < 0):
        raise ProtocolError("bad_field", "before must be a non-negative integer or null")
    limit = obj.get("limit", MAX_HISTORY_PAGE)
    if not _is_int(limit) or not 1 <= limit <= MAX_HISTORY_PAGE:
        raise ProtocolError("bad_field", f"limit must be an integer in 1..{MAX_HISTORY_PAGE}")
    return HistoryRequest(before, limit)


def _message_extras(obj: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """The optional ``action`` and ``to`` fields of a client ``message``."""
    action = obj.get("action", False)
    if not isinstance(action, bool):
        raise ProtocolError("bad_field", "action must be true or false")
    to = None if obj.get("to") is None else _name(obj, "to", limits.max_user_chars)
    if action and to is not None:
        raise ProtocolError("bad_field", "a direct message cannot be an action")
    return {"action": action, "to": to}


def _picked(emotion: Mapping[str, Any]) -> bool:
    picked = emotion.get("picked", False)
    if not isinstance(picked, bool):
        raise ProtocolError("bad_emotion", "emotion picked must be true or false")
    return picked


_PICKED: Final = ',"picked":true'


def _chat_fields(message: ChatMessage) -> str:
    """``"action"`` and ``"to"`` of a chat frame, as :func:`encode` writes them."""
    to = "null" if message.to is None else _string(message.to)
    return f',"action":{"true" if message.action else "false"},"to":{to}'


def _optional_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a string or null, got {type(value).__name__}")


def _parse_topic_changed(obj: Mapping[str, Any]) -> Topic:
    return Topic(
        room=obj["room"],
        topic=_optional_text(obj["topic"]) or None,
        user=obj["user"],
        ts=float(obj["ts"]),
    )


def _parse_history(obj: Mapping[str, Any]) -> History:
    before = obj["before"]
    if before is not None and not _is_int(before):
        raise ValueError("before must be an integer or null")
    return History(
        room=obj["room"],
        before=before,
        messages=tuple(chat_message_from_json(m) for m in obj["messages"]),
        complete=bool(obj["complete"]),
    )


_CHAT_FRAME_PARSERS: Final[dict[str, Callable[[Mapping[str, Any], Limits], ClientFrame]]] = {
    "nick": _parse_nick,
    "topic": _parse_topic,
    "history": _parse_history_request,
}
_CHAT_SERVER_PARSERS: Final[dict[str, Callable[[Mapping[str, Any]], ServerFrame]]] = {
    "topic": _parse_topic_changed,
    "history": _parse_history,
}
