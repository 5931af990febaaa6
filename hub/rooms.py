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
"""

from __future__ import annotations

import dataclasses
import hmac
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from . import protocol
from .auth import Authorizer, SharedSecret, Unauthorized
from .protocol import (
    ChatMessage,
    Emotion,
    ErrorCode,
    Join,
    Limits,
    Member,
    ProtocolError,
    Send,
)
from .storage import MemoryStore, Store

__all__ = ["Action", "Broadcast", "Client", "Close", "Hub", "Reply", "Room", "TokenBucket"]

#: How many (user, id) pairs a room remembers for deduplication, at least.
DEDUP_MIN: int = 1024


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


@dataclasses.dataclass(eq=False)
class Client:
    """State of one connection. ``handle`` belongs to the socket layer."""

    bucket: TokenBucket
    handle: Any = None
    room: Room | None = None
    user: str | None = None
    strikes: int = 0
    closing: bool = False


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
        self._by_key[(message.user, message.id)] = message
        if len(self._by_key) > self.dedup_size:
            self._by_key.popitem(last=False)


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


if TYPE_CHECKING:
    from .cluster import Call  # only a ClusterHub returns one (hub/cluster.py)

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
        # ``token`` is the shared secret of ``--token``; ``auth`` any other check.
        self.auth = auth if auth is not None or token is None else SharedSecret(token)
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
        return self._post(client, frame, now)

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
        if self.auth is not None:
            try:
                self.auth.authorize(join.token, join.user, join.room)
            except Unauthorized as exc:
                return self._fatal(
                    client, "unauthorized", str(exc), protocol.CLOSE_POLICY_VIOLATION
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
        history, truncated = room.history_after(join.since)
        members = room.member_list()
        fitted = _fit(history, protocol.MAX_SERVER_FRAME_BYTES - 64 * (len(members) + 16))
        truncated = truncated or len(fitted) < len(history)
        actions.append(
            Reply(
                client,
                protocol.joined_frame(room.name, join.user, members, fitted, room.seq, truncated),
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
        message = ChatMessage(
            room=room.name,
            seq=room.seq + 1,
            id=send.id,
            user=user,
            text=send.text,
            emotion=send.emotion,
            ts=now,
        )
        # Stored before the broadcast, which is the ack. The store may know a
        # resend that the in-memory dedup index has forgotten (after a restart).
        earlier = self.store.append(message)
        if earlier is not None:
            return [Reply(client, protocol.chat_frame(earlier))]
        room.record(message)
        room.members[user].emotion = send.emotion
        return [Broadcast(room.clients(), protocol.chat_frame(message))]

    # --- helpers --------------------------------------------------------------

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            seq, recent = self.store.load(name, max(self.limits.history_size, DEDUP_MIN))
            room = Room(name, self.limits.history_size, seq, recent)
            self.rooms[name] = room
        return room

    def _refuse(self, client: Client, code: ErrorCode, message: str) -> list[Action]:
        client.strikes += 1
        if client.strikes >= self.limits.max_strikes:
            return self._fatal(
                client,
                "too_many_errors",
                f"{client.strikes} refused frames in a row; last: {code}: {message}",
                protocol.CLOSE_POLICY_VIOLATION,
            )
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
