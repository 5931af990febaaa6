"""Sans-I/O core of a hub that shares its rooms with other hubs (``--redis``).

With several hubs behind a load balancer, the shared state (each room's
``seq``, history, dedup index and presence) lives in one engine
(:mod:`hub.redis_engine`); every hub keeps only its own connections. This
module is the part of that design that needs no I/O, in the style of
:mod:`hub.rooms`, whose validation, rate limit and strikes it inherits:

* :class:`ClusterHub` answers a ``join`` or a ``message`` with a :class:`Call`
  action, a request the socket layer carries out against the engine and whose
  outcome it feeds back (:meth:`ClusterHub.join_done`,
  :meth:`ClusterHub.post_done`, :meth:`ClusterHub.call_failed`).
* The engine publishes every change of a room as an :class:`Event` numbered by
  the room's ``pos``, one counter per room for all events (messages, joins,
  leaves, takeovers), and the engine hands them to :meth:`ClusterHub.event` in
  that order. Messages reach local members only that way, the sender's ack
  included, so every member sees one order: the room's.
* A joining client waits (``pending``) until its join has a ``pos``; events
  after it are delivered, those up to it are in its history.
* A gap in ``pos`` (events lost while the subscription was down) makes the room
  ask for a :class:`SyncCall`; events that arrive meanwhile are buffered, and
  :meth:`ClusterHub.sync_done` sends local members the messages they missed and
  the presence changes, then replays the buffer.

Event wire format, chosen so that a hub forwards a chat message without
decoding it: ``"<pos> m <seq> <chat frame>"``, ``"<pos> j <conn> <json>"`` (join),
``"<pos> l <conn> <json>"`` (leave), ``"<pos> r <conn> <json>"`` (takeover of
connection ``conn``), where ``<json>`` is ``{"user": ..., "members": [...]}``;
``"<pos> n <conn> <json>"`` (a rename; ``<json>`` adds ``"old"``),
``"<pos> d <seq> <chat frame>"`` (a direct message: each hub hands it only to
its local connections of the addressee and the sender; ``seq`` is the room's,
not the message's own) and ``"<pos> t 0 <topic frame>"``.

Direct messages, topics and renames travel as events (numbered by ``pos``
like the rest) so every hub applies them in the room's order; history paging
is a plain read (:class:`HistoryCall`). A direct message whose event a hub
missed (its subscription was down) is not re-read by the sync: it is not
stored in the room's log, only in a short-lived dedup key.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

from . import protocol
from .auth import Authorizer
from .protocol import (
    ChatMessage,
    Emotion,
    HistoryRequest,
    Join,
    Limits,
    Member,
    Nick,
    Send,
    SetTopic,
    Topic,
)
from .rooms import (
    Action,
    Broadcast,
    Call,
    Client,
    Close,
    Hub,
    Reply,
    Room,
    _fit,
    _history_reply,
)

__all__ = [
    "Call",
    "ClusterHub",
    "DirectCall",
    "Event",
    "HistoryCall",
    "JoinCall",
    "JoinResult",
    "LeaveCall",
    "MirrorRoom",
    "NickCall",
    "PostCall",
    "SyncCall",
    "SyncResult",
    "TopicCall",
    "decode_event",
    "encode_event",
]

EventKind: TypeAlias = Literal["m", "j", "l", "r", "n", "d", "t"]
#: Kinds whose payload is a frame to forward, not a presence body.
_FRAME_EVENTS = ("m", "d", "t")


class Event(NamedTuple):
    """One change of a room, in the order the engine applied it.

    ``seq`` and ``frame`` are set for a message (``kind == "m"``); ``user``,
    ``conn`` and ``members`` for a join, a leave or a takeover (``"r"``: the
    user's session moved to another connection; ``conn`` is the old one).

    A named tuple, immutable like the frozen dataclasses around it but built
    in a third of the time: a hub builds one for every event it hears.
    """

    pos: int
    kind: EventKind
    seq: int = 0
    frame: str = ""
    user: str = ""
    conn: str = ""
    members: tuple[Member, ...] = ()
    old: str = ""  # a rename's previous name


def _topic_text(frame: str) -> str | None:
    """The topic of a stored topic frame ("" when none was set)."""
    if not frame:
        return None
    try:
        topic = protocol.decode(frame).get("topic")
    except protocol.ProtocolError:
        return None
    return topic if isinstance(topic, str) else None


def encode_event(event: Event) -> str:
    """Serialise ``event`` as the engine publishes it (see the module docstring)."""
    if event.kind in _FRAME_EVENTS:
        return f"{event.pos} {event.kind} {event.seq} {event.frame}"
    body: dict[str, Any] = {"user": event.user, "members": [m.to_json() for m in event.members]}
    if event.kind == "n":
        body["old"] = event.old
    return f"{event.pos} {event.kind} {event.conn} {json.dumps(body, separators=(',', ':'))}"


def decode_event(raw: str) -> Event:
    """Parse a published event; raise ``ValueError`` if it is malformed."""
    pos, kind, field, payload = raw.split(" ", 3)
    if kind in _FRAME_EVENTS:
        # Sent on as is, so made inert here: another hub may predate the control rule.
        frame = protocol.inert_chat_frame(payload) if kind in ("m", "d") else payload
        return Event(int(pos), kind, seq=int(field), frame=frame)  # type: ignore[arg-type]
    if kind not in ("j", "l", "r", "n"):
        raise ValueError(f"unknown event kind {kind!r}")
    body = json.loads(payload)
    return Event(
        int(pos),
        # ignore: kind is "j", "l" or "r" (checked above); mypy does not narrow a str by `in`.
        kind,  # type: ignore[arg-type]
        user=body["user"],
        conn=field,
        members=parse_members(body["members"]),
        old=body.get("old", "") if kind == "n" else "",
    )


def parse_members(raw: Any) -> tuple[Member, ...]:
    """Members as the engine stores them; an empty Lua table encodes as ``{}``."""
    if not raw:
        return ()
    return tuple(
        Member(m["user"], None if not m.get("emotion") else Emotion(**m["emotion"])) for m in raw
    )  # Emotion(**...): a picked emotion's "picked" comes along


# --- requests to the engine and their outcomes -----------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class JoinCall:
    """Register ``client`` as ``user`` in ``room`` everywhere; read its history."""

    client: Client
    room: str
    user: str
    session: str | None
    conn: str
    since: int | None
    history_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class PostCall:
    """Store ``message`` (its ``seq`` is the engine's to give) and publish it."""

    client: Client
    message: ChatMessage
    conn: str


@dataclasses.dataclass(frozen=True, slots=True)
class LeaveCall:
    """Take ``user`` out of ``room`` if ``conn`` still holds the name there."""

    room: str
    user: str
    conn: str


@dataclasses.dataclass(frozen=True, slots=True)
class SyncCall:
    """Read the room's state: messages after ``since``, members and ``pos``."""

    room: str
    since: int
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class DirectCall:
    """Hand ``message`` (its ``to`` set) to the addressee's hub, unless it is a resend."""

    client: Client
    message: ChatMessage
    conn: str


@dataclasses.dataclass(frozen=True, slots=True)
class NickCall:
    """Rename ``old`` to ``new`` in ``room`` if ``conn`` holds ``old`` and ``new`` is free."""

    client: Client
    room: str
    old: str
    new: str
    conn: str
    token: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class TopicCall:
    """Store ``topic`` as its room's and publish it."""

    client: Client
    topic: Topic


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryCall:
    """Read up to ``limit`` kept messages of ``room`` with ``seq < before``."""

    client: Client
    room: str
    before: int | None
    limit: int


Request: TypeAlias = (
    "JoinCall | PostCall | LeaveCall | SyncCall | DirectCall | NickCall | TopicCall | HistoryCall"
)


@dataclasses.dataclass(frozen=True, slots=True)
class JoinResult:
    """What the engine answered to a :class:`JoinCall`.

    ``refused`` is ``"name_taken"`` when another session holds the name;
    otherwise the join happened at ``pos``, when the room's ``seq`` was ``seq``,
    ``members`` were in it and ``history`` (oldest first) was what the client
    asked for, ``truncated`` if older messages it missed are gone.
    """

    refused: str | None = None
    pos: int = 0
    seq: int = 0
    members: tuple[Member, ...] = ()
    history: tuple[ChatMessage, ...] = ()
    truncated: bool = False
    topic_frame: str = ""  # the room's topic frame as stored ("" if none was set)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncResult:
    """The room's state at ``pos``: ``seq``, ``members``, messages after the call's ``since``."""

    pos: int
    seq: int
    members: tuple[Member, ...]
    messages: tuple[ChatMessage, ...]
    topic_frame: str = ""


# --- rooms -----------------------------------------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class _Local:
    """A local connection in a room: live from ``pos`` on, or pending its join."""

    conn: str
    session: str | None
    pos: int | None = None  # the join's event; None while pending
    seq: int = 0  # the last message this client has
    buffer: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)  # pos, seq, frame


class MirrorRoom(Room):
    """This hub's view of a shared room: its local members and how far it has read.

    ``pos`` is the last event applied (None until the first); ``seq`` the last
    message delivered; ``everyone`` the members on all hubs after that event.
    It is a :class:`~hub.rooms.Room` for the code it shares with the single
    hub (``client.room``); history, dedup and membership live in the engine.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, history_size=1)
        self.pos: int | None = None
        self.everyone: tuple[Member, ...] = ()
        self.local: dict[Client, _Local] = {}
        self.syncing = False
        self.sync_failed = False  # retried by retry_failed_syncs
        self.buffer: list[Event] = []
        self.topic_frame = ""  # the last topic frame seen, to spot one a sync brings

    def live(self, pos: int, seq: int | None = None) -> list[Client]:
        """Local clients that joined before event ``pos`` (and lack message ``seq``).

        Pending clients get the event later from their buffer (:meth:`hold`).
        """
        clients = []
        for client, member in self.local.items():
            if member.pos is None or member.pos >= pos:
                continue
            if seq is not None:
                if member.seq >= seq:
                    continue
                member.seq = seq
            clients.append(client)
        return clients

    def hold(self, pos: int, frame: str, seq: int = 0) -> None:
        """Keep ``frame`` for the clients whose join has no ``pos`` yet."""
        for member in self.local.values():
            if member.pos is None:
                member.buffer.append((pos, seq, frame))


class ClusterHub(Hub):
    """The rooms of one hub among several; shared state lives in the engine."""

    def __init__(
        self,
        limits: Limits = protocol.DEFAULT_LIMITS,
        token: str | None = None,
        hub_id: str = "hub",
        auth: Authorizer | None = None,
    ) -> None:
        super().__init__(limits, None, token, auth)
        self.hub_id = hub_id
        # ignore: a ClusterHub holds only MirrorRooms; Hub's dict[str, Room] is invariant.
        self.rooms: dict[str, MirrorRoom] = {}  # type: ignore[assignment]
        self._conns = itertools.count(1)

    # --- from the socket layer ---------------------------------------------------

    def disconnect(self, client: Client) -> list[Action]:
        client.closing = True
        room, user = client.room, client.user
        client.room = None
        if not isinstance(room, MirrorRoom) or user is None:
            return []
        local = room.local.pop(client, None)
        if local is None:
            return []  # taken over by a newer connection of the same session
        return [Call(LeaveCall(room.name, user, local.conn))]

    def _join(self, client: Client, join: Join) -> list[Action]:
        refused = self._admit(client, join)
        if refused:
            return refused
        room = self.rooms.get(join.room)
        if room is None:
            room = self.rooms[join.room] = MirrorRoom(join.room)
        conn = f"{self.hub_id}.{next(self._conns)}"
        room.local[client] = _Local(conn, join.session)
        client.room, client.user, client.strikes = room, join.user, 0
        call = JoinCall(
            client, join.room, join.user, join.session, conn, join.since, self.limits.history_size
        )
        return [Call(call)]

    def _post(self, client: Client, send: Send, now: float) -> list[Action]:
        room, user = client.room, client.user
        if not isinstance(room, MirrorRoom) or user is None or client not in room.local:
            return self._refuse(client, "not_joined", "send a join frame first")
        client.strikes = 0
        conn = room.local[client].conn
        if send.to is not None:
            message = ChatMessage(
                room.name, 0, send.id, user, send.text, send.emotion, now, to=send.to
            )
            return [Call(DirectCall(client, message, conn))]
        message = ChatMessage(
            room.name, 0, send.id, user, send.text, send.emotion, now, action=send.action
        )
        return [Call(PostCall(client, message, conn))]

    def _chat_request(
        self, client: Client, frame: Nick | SetTopic | HistoryRequest, now: float
    ) -> list[Action]:
        room = client.room
        if isinstance(room, MirrorRoom) and client not in room.local:
            return self._refuse(client, "not_joined", "send a join frame first")
        return super()._chat_request(client, frame, now)

    def _nick(self, client: Client, room: Room, user: str, nick: Nick) -> list[Action]:
        # Uniqueness is the engine's to check (the name may be held on another hub).
        refused = self._check_nick(client, room, user, nick)
        if refused:
            return refused
        assert isinstance(room, MirrorRoom)
        conn = room.local[client].conn
        return [Call(NickCall(client, room.name, user, nick.user, conn, nick.token))]

    def _set_topic(
        self, client: Client, room: Room, user: str, request: SetTopic, now: float
    ) -> list[Action]:
        return [Call(TopicCall(client, Topic(room.name, request.topic or None, user, now)))]

    def _history(self, client: Client, room: Room, request: HistoryRequest) -> list[Action]:
        return [Call(HistoryCall(client, room.name, request.before, request.limit))]

    # --- outcomes of calls -------------------------------------------------------

    def join_done(self, call: JoinCall, result: JoinResult) -> list[Action]:
        """Answer the client: its ``joined`` frame, then what it buffered since."""
        client = call.client
        room = self.rooms.get(call.room)
        local = None if room is None else room.local.get(client)
        if room is None or local is None or client.closing:
            # Gone while the engine worked: undo the registration.
            return [] if result.refused else [Call(LeaveCall(call.room, call.user, call.conn))]
        if result.refused is not None:
            del room.local[client]
            client.room = client.user = None
            return self._refuse(client, "name_taken", f"{call.user} is already in {call.room}")
        history = list(result.history)
        budget = protocol.MAX_SERVER_FRAME_BYTES - 64 * (len(result.members) + 16)
        fitted = _fit(history, budget)
        frame = protocol.joined_frame(
            call.room,
            call.user,
            result.members,
            fitted,
            result.seq,
            result.truncated or len(fitted) < len(history),
            _topic_text(result.topic_frame),
        )
        actions: list[Action] = [Reply(client, frame)]
        if room.pos is None:
            # No event since the subscription: the next one must be result.pos + 1.
            room.pos, room.seq = result.pos, max(room.seq, result.seq)
        if result.pos >= room.pos:
            room.everyone = result.members
            room.topic_frame = result.topic_frame
        local.pos, local.seq = result.pos, result.seq
        for pos, seq, later in local.buffer:
            if pos > result.pos and (seq == 0 or seq > local.seq):
                actions.append(Reply(client, later))
                local.seq = max(local.seq, seq)
        local.buffer = []
        return actions

    def post_done(self, call: PostCall, earlier: ChatMessage | None) -> list[Action]:
        """A resend: acknowledge it again to the sender; a new message acks via its event."""
        if earlier is None or call.client.closing:
            return []
        return [Reply(call.client, protocol.chat_frame(earlier))]

    def direct_done(self, call: DirectCall, outcome: str | ChatMessage | None) -> list[Action]:
        """``outcome``: None (sent: acked by its event), a resend's first copy, or a refusal."""
        client = call.client
        if outcome is None or client.closing:
            return []
        if isinstance(outcome, ChatMessage):
            return [Reply(client, protocol.chat_frame(outcome))]
        to = call.message.to
        return self._refuse(
            client, "no_such_member", f"{to} is not in {call.message.room}", id=call.message.id
        )

    def nick_done(self, call: NickCall, refused: str | None) -> list[Action]:
        """The rename happened (its event tells the room) or was refused."""
        client = call.client
        if client.closing or client.user != call.old:
            return []
        if refused == "name_taken":
            return self._refuse(client, "name_taken", f"{call.new} is already in {call.room}")
        if refused is not None:
            return self._refuse(client, "not_joined", f"not in {call.room} as {call.old}")
        client.user = call.new
        if call.token is not None:
            client.token = call.token
        return []

    def history_done(
        self, call: HistoryCall, messages: list[ChatMessage], complete: bool
    ) -> list[Action]:
        if call.client.closing:
            return []
        return [Reply(call.client, _history_reply(call.room, call.before, messages, complete))]

    def call_failed(self, call: Request, reason: str) -> list[Action]:
        """The engine could not be reached: tell the client; nothing was acknowledged."""
        if isinstance(call, JoinCall):
            room = self.rooms.get(call.room)
            if room is not None:
                room.local.pop(call.client, None)
            client = call.client
            client.room = client.user = None
            if client.closing:
                return []
            client.closing = True
            return [
                Reply(client, protocol.error_frame("unavailable", reason)),
                Close(client, protocol.CLOSE_TRY_AGAIN_LATER, "unavailable"),
            ]
        answered = (PostCall, DirectCall, NickCall, TopicCall, HistoryCall)
        if isinstance(call, answered) and not call.client.closing:
            return [Reply(call.client, protocol.error_frame("unavailable", reason))]
        if isinstance(call, SyncCall):
            room = self.rooms.get(call.room)
            if room is not None:
                # Events buffered for it may be all the room gets for a while
                # (a quiet room): the engine retries once it reaches storage.
                room.syncing = False
                room.sync_failed = True
        return []

    def outage(self, reason: str) -> list[Action]:
        """Tell every local client that the engine is unreachable."""
        clients = [c for room in self.rooms.values() for c in room.local if not c.closing]
        if not clients:
            return []
        return [Broadcast(clients, protocol.error_frame("unavailable", reason))]

    # --- events ------------------------------------------------------------------

    def event(self, room_name: str, event: Event) -> list[Action]:
        """Apply one event of ``room_name`` as the engine published it."""
        room = self.rooms.get(room_name)
        if room is None:
            return []
        if room.syncing:
            room.buffer.append(event)
            return []
        if room.pos is not None:
            if event.pos <= room.pos:
                return []  # already covered by a sync
            if event.pos != room.pos + 1:
                return self._begin_sync(room, [event])
        room.pos = event.pos
        return self._apply(room, event)

    def resync(self) -> list[Action]:
        """Sync every room: the subscription was re-established and events may be lost."""
        actions: list[Action] = []
        for room in self.rooms.values():
            actions += self._begin_sync(room, [])
        return actions

    def retry_failed_syncs(self) -> list[Action]:
        """Sync again every room whose last sync failed (call when storage is reachable)."""
        actions: list[Action] = []
        for room in self.rooms.values():
            if room.sync_failed:
                actions += self._begin_sync(room, room.buffer)
        return actions

    def sync_done(self, call: SyncCall, result: SyncResult) -> list[Action]:
        """Catch local members up with the room's state, then replay buffered events."""
        room = self.rooms.get(call.room)
        if room is None:
            return []
        actions: list[Action] = []
        for message in result.messages:
            if message.seq > room.seq:
                actions += self._deliver(
                    room, result.pos, message.seq, protocol.chat_frame(message)
                )
        actions += self._presence_changes(room, result.pos, result.members)
        if result.topic_frame != room.topic_frame:  # set while our subscription was down
            room.topic_frame = result.topic_frame
            room.hold(result.pos, result.topic_frame)
            clients = room.live(result.pos)
            if clients:
                actions.append(Broadcast(clients, result.topic_frame))
        room.pos, room.seq, room.everyone = result.pos, max(room.seq, result.seq), result.members
        room.syncing = False
        buffered, room.buffer = room.buffer, []
        for event in buffered:
            actions += self.event(call.room, event)
        return actions

    def idle_rooms(self) -> list[str]:
        """Forget rooms without local members and return their names (to unsubscribe)."""
        idle = [name for name, room in self.rooms.items() if not room.local]
        for name in idle:
            del self.rooms[name]
        return idle

    def members(self) -> list[tuple[str, str, str | None, str]]:
        """(room, user, session, conn) of every live local member, to re-register them."""
        return [
            (room.name, c.user, m.session, m.conn)
            for room in self.rooms.values()
            for c, m in room.local.items()
            if m.pos is not None and c.user is not None and not c.closing
        ]

    def evict(self, room_name: str, conn: str, code: protocol.ErrorCode, why: str) -> list[Action]:
        """Close the local connection ``conn`` of ``room_name``, e.g. after losing its name."""
        room = self.rooms.get(room_name)
        if room is None:
            return []
        for client, local in list(room.local.items()):
            if local.conn == conn:
                del room.local[client]
                client.room = None
                return self._fatal(client, code, why, protocol.CLOSE_POLICY_VIOLATION)
        return []

    # --- helpers -----------------------------------------------------------------

    def _begin_sync(self, room: MirrorRoom, buffered: list[Event]) -> list[Action]:
        room.buffer = buffered + room.buffer if room.syncing else buffered
        if room.syncing:
            return []
        room.syncing, room.sync_failed = True, False
        return [Call(SyncCall(room.name, room.seq, self.limits.history_size))]

    def _apply(self, room: MirrorRoom, event: Event) -> list[Action]:
        if event.kind == "m":
            if event.seq <= room.seq:
                return []
            return self._deliver(room, event.pos, event.seq, event.frame)
        if event.kind == "r":
            return self._taken_over(room, event.conn)
        if event.kind == "d":
            return self._direct_event(room, event)
        if event.kind == "t":
            room.topic_frame = event.frame
            room.hold(event.pos, event.frame)
            clients = room.live(event.pos)
            return [Broadcast(clients, event.frame)] if clients else []
        room.everyone = event.members
        if event.kind == "n":
            frame = protocol.nick_presence_frame(event.user, event.old, event.members)
        else:
            presence: Literal["join", "leave"] = "join" if event.kind == "j" else "leave"
            frame = protocol.presence_frame(presence, event.user, event.members)
        room.hold(event.pos, frame)
        clients = room.live(event.pos)
        return [Broadcast(clients, frame)] if clients else []

    def _deliver(self, room: MirrorRoom, pos: int, seq: int, frame: str) -> list[Action]:
        room.seq = seq
        room.hold(pos, frame, seq)
        clients = room.live(pos, seq)
        return [Broadcast(clients, frame)] if clients else []

    def _direct_event(self, room: MirrorRoom, event: Event) -> list[Action]:
        """Hand a direct message to the local connections of its addressee and sender only."""
        try:
            head = protocol.decode(event.frame)
            names = {head["user"], head["to"]}
        except (protocol.ProtocolError, KeyError):
            return []
        clients = []
        for client, local in room.local.items():
            if client.user not in names:
                continue
            if local.pos is None:
                local.buffer.append((event.pos, 0, event.frame))
            elif local.pos < event.pos:
                clients.append(client)
        return [Broadcast(clients, event.frame)] if clients else []

    def _taken_over(self, room: MirrorRoom, conn: str) -> list[Action]:
        for client, local in list(room.local.items()):
            if local.conn == conn:
                del room.local[client]
                client.room = None
                client.closing = True
                return [
                    Reply(
                        client, protocol.error_frame("session_replaced", "joined from elsewhere")
                    ),
                    Close(client, protocol.CLOSE_NORMAL, "session_replaced"),
                ]
        return []

    def _presence_changes(
        self, room: MirrorRoom, pos: int, members: Sequence[Member]
    ) -> list[Action]:
        """Presence frames that turn ``room.everyone`` into ``members``."""
        before = {m.user for m in room.everyone}
        after = {m.user for m in members}
        actions: list[Action] = []
        for event, users in (("leave", before - after), ("join", after - before)):
            for user in sorted(users):
                # ignore: event is "leave" or "join" (the tuple above); mypy widens it to str.
                frame = protocol.presence_frame(event, user, members)  # type: ignore[arg-type]
                room.hold(pos, frame)
                clients = room.live(pos)
                if clients:
                    actions.append(Broadcast(clients, frame))
        return actions
