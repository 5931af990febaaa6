"""Sans-I/O core of the hub: rooms, membership, seq, history, dedup and limits.

Nothing here touches a socket or an event loop. The socket layer
(:mod:`hub.server`) creates a :class:`Client` per connection, feeds every
frame it reads to :meth:`Hub.receive_text` (or :meth:`Hub.receive_binary`,
:meth:`Hub.frame_too_big`, :meth:`Hub.disconnect`) and carries out the
returned actions in order: :class:`Reply`, :class:`Broadcast`, :class:`Close`.
Time comes in as an argument, so tests drive the rate limit deterministically.

A message is written to the :class:`~hub.storage.Store` before the
:class:`Broadcast` that acknowledges it is returned: the hub never
acknowledges what it could lose on restart.

Beside chat messages a member may send a direct message (``to``: only that
member's connection and the sender's get it; it takes no ``seq`` and stays out
of history), take another name (``nick``: unique in the room, and re-checked by
the optional ``auth`` check, e.g. ``hub.auth``'s for JWTs), set
the room's ``topic`` (stored, sent on every join) and page through everything
the store keeps (``history``).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any, Protocol, TypeAlias

from . import protocol
from .protocol import (
    ChatMessage,
    Emotion,
    ErrorCode,
    HistoryRequest,
    Join,
    Limits,
    Member,
    Nick,
    ProtocolError,
    Send,
    SetTopic,
    Topic,
)
from .storage import MemoryStore, Store

__all__ = [
    "Action",
    "Authorizer",
    "Broadcast",
    "Call",
    "Client",
    "Close",
    "Hub",
    "Reply",
    "Room",
    "TokenBucket",
]

#: How many (user, id) pairs a room remembers for deduplication, at least.
DEDUP_MIN: int = 1024


class Authorizer(Protocol):
    """A token check the core consults; ``hub.auth``'s JWT and shared-secret checks are ones."""

    def authorize(self, token: str | None, user: str, room: str) -> None:
        """Return if ``token`` lets ``user`` be in ``room``; raise (the reason) if not."""
        ...


class TokenBucket:
    """Allow ``rate`` events per second on average and ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether the event may pass."""
        elapsed = max(0.0, now - self.last)
        self.last = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until :meth:`take` can succeed (0 if it can now)."""
        tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


@dataclasses.dataclass(eq=False)
class Client:
    """State of one connection. ``handle`` belongs to the socket layer."""

    bucket: TokenBucket
    handle: Any = None
    room: Room | None = None
    user: str | None = None
    strikes: int = 0
    closing: bool = False
    token: str | None = None  # the join's token, for re-checks on a nick


@dataclasses.dataclass(eq=False)
class _Membership:
    client: Client
    session: str | None
    emotion: Emotion | None = None


class Room:
    """One room: its members, its ``seq``, its recent history and its dedup index."""

    def __init__(
        self,
        name: str,
        history_size: int,
        seq: int = 0,
        recent: Iterable[ChatMessage] = (),
    ) -> None:
        self.name = name
        self.seq = seq
        self.history: deque[ChatMessage] = deque(maxlen=history_size)
        self.dedup_size = max(history_size, DEDUP_MIN)
        self._by_key: OrderedDict[tuple[str, str], ChatMessage] = OrderedDict()
        self.members: dict[str, _Membership] = {}
        self.topic: Topic | None = None
        for message in recent:
            self.record(message)

    def clients(self) -> list[Client]:
        """Return the connections currently in the room."""
        return [m.client for m in self.members.values()]

    def member_list(self) -> list[Member]:
        return [Member(user, m.emotion) for user, m in self.members.items()]

    def find(self, user: str, id: str) -> ChatMessage | None:
        """Return the message ``user`` already sent with ``id``, if remembered."""
        return self._by_key.get((user, id))

    def history_after(self, since: int | None) -> tuple[list[ChatMessage], bool]:
        """Return the messages with ``seq > since`` and whether some are gone."""
        if since is None or since > self.seq:
            # Fresh join, or a since from a hub that lost its state: send it all.
            return list(self.history), False
        missed = [m for m in self.history if m.seq > since]
        first_kept = missed[0].seq if missed else self.seq + 1
        return missed, first_kept != since + 1

    def record(self, message: ChatMessage) -> None:
        """Add ``message`` to the history and the dedup index."""
        self.seq = max(self.seq, message.seq)
        self.history.append(message)
        self.remember(message)

    def remember(self, message: ChatMessage) -> None:
        """Add ``message`` to the dedup index only (a direct message: not in history)."""
        self._by_key[(message.user, message.id)] = message
        if len(self._by_key) > self.dedup_size:
            self._by_key.popitem(last=False)

    def topic_text(self) -> str | None:
        """The topic a ``joined`` frame carries: None when none is set."""
        return None if self.topic is None else self.topic.topic


@dataclasses.dataclass(frozen=True)
class Reply:
    """Send ``frame`` to ``client`` only."""

    client: Client
    frame: str


@dataclasses.dataclass(frozen=True)
class Broadcast:
    """Send ``frame`` to each of ``clients``."""

    clients: list[Client]
    frame: str


@dataclasses.dataclass(frozen=True)
class Close:
    """Close ``client``'s connection with ``code`` and ``reason``."""

    client: Client
    code: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Carry out ``request`` against the shared engine, then report back to the core.

    Only :class:`hub.cluster.ClusterHub` (``--redis``) returns these; its
    module defines the requests.
    """

    request: Any


Action: TypeAlias = "Reply | Broadcast | Close | Call"


class Hub:
    """All rooms of one hub process, driven by the socket layer."""

    def __init__(
        self,
        limits: Limits = protocol.DEFAULT_LIMITS,
        store: Store | None = None,
        token: str | None = None,
        auth: Authorizer | None = None,
    ) -> None:
        self.limits = limits
        self.store: Store = store if store is not None else MemoryStore()
        self.token = token
        self.auth = auth  # re-checks the token of each nick
        self.rooms: dict[str, Room] = {}

    # --- connection events ----------------------------------------------------

    def connect(self, now: float, handle: Any = None) -> Client:
        """Register a new connection."""
        bucket = TokenBucket(self.limits.rate_per_second, self.limits.rate_burst, now)
        return Client(bucket=bucket, handle=handle)

    def receive_text(self, client: Client, raw: str, now: float) -> list[Action]:
        """Handle one text frame from ``client``."""
        if client.closing:
            return []
        if not client.bucket.take(now):
            return self._refuse(client, "rate_limited", "too many frames; slow down")
        try:
            frame = protocol.parse_client_frame(raw, self.limits)
        except ProtocolError as exc:
            if exc.code == "frame_too_big":
                return self.frame_too_big(client)
            return self._refuse(client, exc.code, exc.message)
        if isinstance(frame, Join):
            return self._join(client, frame)
        if isinstance(frame, Send):
            return self._post(client, frame, now)
        return self._chat_request(client, frame, now)

    def receive_binary(self, client: Client) -> list[Action]:
        """Handle a binary frame: not part of the protocol."""
        return self._fatal(
            client,
            "binary_frame",
            "binary frames are not accepted; send JSON text frames",
            protocol.CLOSE_UNSUPPORTED_DATA,
        )

    def frame_too_big(self, client: Client) -> list[Action]:
        """Handle a frame larger than ``max_frame_bytes``."""
        limit = self.limits.max_frame_bytes
        return self._fatal(
            client,
            "frame_too_big",
            f"frame exceeds {limit} bytes",
            protocol.CLOSE_MESSAGE_TOO_BIG,
        )

    def join_deadline(self, client: Client) -> list[Action]:
        """Handle ``join_timeout`` passing: close a connection that never joined."""
        if client.room is not None or client.closing:
            return []
        return self._fatal(
            client,
            "join_timeout",
            f"no join within {self.limits.join_timeout:g} s",
            protocol.CLOSE_POLICY_VIOLATION,
        )

    def disconnect(self, client: Client) -> list[Action]:
        """Forget ``client``; tell the room it left unless its session moved on."""
        client.closing = True
        room, user = client.room, client.user
        client.room = None
        if room is None or user is None:
            return []
        membership = room.members.get(user)
        if membership is None or membership.client is not client:
            return []  # taken over by a newer connection of the same session
        del room.members[user]
        if not room.members:
            return []
        frame = protocol.presence_frame("leave", user, room.member_list())
        return [Broadcast(room.clients(), frame)]

    # --- frames ---------------------------------------------------------------

    def _admit(self, client: Client, join: Join) -> list[Action]:
        """Check a join against the connection, the token and the room limit.

        Return the refusal, or an empty list to let the join through.
        """
        if client.room is not None:
            return self._refuse(client, "already_joined", f"already in {client.room.name}")
        if self.token is not None and not (
            join.token is not None and hmac.compare_digest(join.token.encode(), self.token.encode())
        ):
            return self._fatal(
                client, "unauthorized", "wrong or missing token", protocol.CLOSE_POLICY_VIOLATION
            )
        if join.room not in self.rooms and len(self.rooms) >= self.limits.max_rooms:
            return self._refuse(
                client, "room_limit", f"the hub holds {self.limits.max_rooms} rooms already"
            )
        return []

    def _join(self, client: Client, join: Join) -> list[Action]:
        refused = self._admit(client, join)
        if refused:
            return refused
        room = self._room(join.room)
        actions: list[Action] = []
        existing = room.members.get(join.user)
        takeover = False
        if existing is not None:
            if not _same_session(existing.session, join.session):
                return self._refuse(client, "name_taken", f"{join.user} is already in {join.room}")
            old = existing.client
            old.closing = True
            old.room = None
            actions.append(
                Reply(old, protocol.error_frame("session_replaced", "joined from elsewhere"))
            )
            actions.append(Close(old, protocol.CLOSE_NORMAL, "session_replaced"))
            existing.client = client
            takeover = True
        else:
            room.members[join.user] = _Membership(client, join.session)
        client.room, client.user, client.strikes = room, join.user, 0
        client.token = join.token
        history, truncated = room.history_after(join.since)
        members = room.member_list()
        fitted = _fit(history, protocol.MAX_SERVER_FRAME_BYTES - 64 * (len(members) + 16))
        truncated = truncated or len(fitted) < len(history)
        actions.append(
            Reply(
                client,
                protocol.joined_frame(
                    room.name, join.user, members, fitted, room.seq, truncated, room.topic_text()
                ),
            )
        )
        if not takeover:
            others = [c for c in room.clients() if c is not client]
            if others:
                frame = protocol.presence_frame("join", join.user, members)
                actions.append(Broadcast(others, frame))
        return actions

    def _post(self, client: Client, send: Send, now: float) -> list[Action]:
        room, user = client.room, client.user
        if room is None or user is None:
            return self._refuse(client, "not_joined", "send a join frame first")
        client.strikes = 0
        duplicate = room.find(user, send.id)
        if duplicate is not None:
            # A resend: acknowledge again, to the sender only.
            return [Reply(client, protocol.chat_frame(duplicate))]
        if send.to is not None:
            return self._direct(client, room, user, send, now)
        message = ChatMessage(
            room=room.name,
            seq=room.seq + 1,
            id=send.id,
            user=user,
            text=send.text,
            emotion=send.emotion,
            ts=now,
            action=send.action,
        )
        # Stored before the broadcast, which is the ack. The store may know a
        # resend that the in-memory dedup index has forgotten (after a restart).
        earlier = self.store.append(message)
        if earlier is not None:
            return [Reply(client, protocol.chat_frame(earlier))]
        room.record(message)
        room.members[user].emotion = send.emotion
        return [Broadcast(room.clients(), protocol.chat_frame(message))]

    # --- direct messages, nick, topic, history ---------------------------------

    def _chat_request(
        self, client: Client, frame: Nick | SetTopic | HistoryRequest, now: float
    ) -> list[Action]:
        """Handle a ``nick``, ``topic`` or ``history`` frame from a member."""
        room, user = client.room, client.user
        if room is None or user is None:
            return self._refuse(client, "not_joined", "send a join frame first")
        if isinstance(frame, Nick):
            return self._nick(client, room, user, frame)
        client.strikes = 0
        if isinstance(frame, SetTopic):
            return self._set_topic(client, room, user, frame, now)
        return self._history(client, room, frame)

    def _direct(
        self, client: Client, room: Room, user: str, send: Send, now: float
    ) -> list[Action]:
        """Deliver a direct message to its addressee's connection and back to the sender.

        It takes no ``seq`` of its own (it carries the room's current one, to
        place it) and is not stored: nobody else can ever read it, a resend is
        recognised while the room's dedup index remembers it.
        """
        target = room.members.get(send.to or "")
        if target is None:
            return self._refuse(
                client, "no_such_member", f"{send.to} is not in {room.name}", id=send.id
            )
        message = ChatMessage(
            room.name, room.seq, send.id, user, send.text, send.emotion, now, to=send.to
        )
        room.remember(message)
        recipients = [client] if target.client is client else [target.client, client]
        return [Broadcast(recipients, protocol.chat_frame(message))]

    def _nick(self, client: Client, room: Room, user: str, nick: Nick) -> list[Action]:
        """Rename ``user`` to ``nick.user`` if the name is free and the token allows it."""
        refused = self._check_nick(client, room, user, nick)
        if refused:
            return refused
        client.strikes = 0
        room.members[nick.user] = room.members.pop(user)
        client.user = nick.user
        if nick.token is not None:
            client.token = nick.token
        frame = protocol.nick_presence_frame(nick.user, user, room.member_list())
        return [Broadcast(room.clients(), frame)]

    def _check_nick(self, client: Client, room: Room, user: str, nick: Nick) -> list[Action]:
        """Return the refusal of a rename, or an empty list to let it through."""
        if nick.user != user and nick.user in room.members:
            return self._refuse(client, "name_taken", f"{nick.user} is already in {room.name}")
        if self.auth is not None:
            token = nick.token if nick.token is not None else client.token
            try:
                self.auth.authorize(token, nick.user, room.name)
            except Exception as exc:  # fail closed: any failure of the check refuses
                return self._refuse(client, "unauthorized", f"cannot take {nick.user}: {exc}")
        return []

    def _set_topic(
        self, client: Client, room: Room, user: str, request: SetTopic, now: float
    ) -> list[Action]:
        topic = Topic(room.name, request.topic or None, user, now)
        self.store.set_topic(topic)  # stored before anyone is told, like a message
        room.topic = topic
        return [Broadcast(room.clients(), protocol.topic_changed_frame(topic))]

    def _history(self, client: Client, room: Room, request: HistoryRequest) -> list[Action]:
        messages, complete = self.store.page(room.name, request.before, request.limit)
        return [Reply(client, _history_reply(room.name, request.before, messages, complete))]

    # --- helpers --------------------------------------------------------------

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            seq, recent = self.store.load(name, max(self.limits.history_size, DEDUP_MIN))
            room = Room(name, self.limits.history_size, seq, recent)
            room.topic = self.store.topic(name)
            self.rooms[name] = room
        return room

    def _refuse(
        self, client: Client, code: ErrorCode, message: str, id: str | None = None
    ) -> list[Action]:
        client.strikes += 1
        if client.strikes >= self.limits.max_strikes:
            return self._fatal(
                client,
                "too_many_errors",
                f"{client.strikes} refused frames in a row; last: {code}: {message}",
                protocol.CLOSE_POLICY_VIOLATION,
            )
        if id is not None:
            return [Reply(client, protocol.refusal_frame(code, message, id))]
        return [Reply(client, protocol.error_frame(code, message))]

    def _fatal(self, client: Client, code: ErrorCode, message: str, close: int) -> list[Action]:
        client.closing = True
        return [
            Reply(client, protocol.error_frame(code, message)),
            Close(client, close, code),
        ]


def _same_session(held: str | None, offered: str | None) -> bool:
    if held is None or offered is None:
        return False
    return hmac.compare_digest(held.encode(), offered.encode())


def _history_reply(
    room: str, before: int | None, messages: list[ChatMessage], complete: bool
) -> str:
    """The ``history`` frame for a page, trimmed to the newest messages that fit a frame.

    Trimmed, it is not ``complete``: the client asks again before its oldest message.
    """
    fitted = _fit(messages, protocol.MAX_SERVER_FRAME_BYTES - 1024)
    return protocol.history_frame(room, before, fitted, complete and len(fitted) == len(messages))


def _fit(history: list[ChatMessage], budget: int) -> list[ChatMessage]:
    """Keep the newest messages whose frames fit in ``budget`` bytes."""
    # Cheap bound first: JSON escapes at most 6 bytes per character.
    if sum(6 * len(m.text) + 512 for m in history) <= budget:
        return history
    kept = 0
    for i in range(len(history) - 1, -1, -1):
        kept += len(protocol.chat_frame(history[i]).encode()) + 1
        if kept > budget:
            return history[i + 1 :]
    return history
