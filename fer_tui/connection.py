"""The client's link to the hub: join, reconnect with backoff, resume, outbox.

:class:`HubConnection` runs as one asyncio task (``await conn.run()``) and
reports what happens through a callback with small event objects, so the UI
never touches the socket. Guarantees:

* after the hub goes away it reconnects with exponential backoff, joins again
  with ``since`` = the highest ``seq`` seen and the same ``session`` secret, so
  missed messages arrive in order and the old connection is taken over;
* :meth:`HubConnection.send` never fails: a message goes to the outbox first and
  stays there, keyed by its ``id``, until the hub's own copy comes back; after
  a reconnect every unacknowledged message is resent with its original ``id``
  (the hub drops duplicates), so nothing typed is lost or shown twice;
* when a resume's ``joined`` says ``truncated`` (more was missed than a join
  carries), it pages back with ``history`` requests through everything the hub
  keeps, and reports the missed messages, then the join's, then live ones, in
  ``seq`` order: nothing the hub still has is skipped.

One connection serves one room: a client in several rooms holds one per room
(``docs/protocol.md`` says why). Besides messages (with ``action`` for /me and
``to`` for a direct message) it sends ``nick``, ``topic`` and ``history``
requests, paced by the hub's own :class:`hub.rooms.TokenBucket`.

Frames are built and parsed only by :mod:`hub.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hub import protocol
from hub.protocol import (
    ChatMessage,
    Emotion,
    ErrorFrame,
    History,
    Joined,
    Member,
    Presence,
    Topic,
)
from hub.rooms import TokenBucket

ConnectionState = Literal["connecting", "online", "offline", "stopped"]

#: Refusals of a join after which retrying cannot help. Once joined, the same
#: codes answer a request (a nick, a topic) and the connection stays.
FATAL_ERRORS = frozenset({"unauthorized", "bad_field", "name_taken"})
#: Refusals of a history request by a hub that cannot page: stop paging a gap.
NO_PAGING_ERRORS = frozenset({"bad_type", "bad_field"})
#: Refusals after which pending messages are resent, and the delay in seconds.
RESEND_ERRORS = {"rate_limited": 1.0, "unavailable": 2.0}


@dataclass(frozen=True)
class StateChanged:
    state: ConnectionState
    detail: str = ""


@dataclass(frozen=True)
class JoinedRoom:
    joined: Joined


@dataclass(frozen=True)
class MessageReceived:
    message: ChatMessage
    own: bool  # our own message coming back: the hub's acknowledgement


@dataclass(frozen=True)
class PresenceChanged:
    """A join, a leave, or (``presence.event == "nick"``) ``presence.old`` renamed."""

    presence: Presence


@dataclass(frozen=True)
class HubError:
    error: ErrorFrame


@dataclass(frozen=True)
class TopicChanged:
    """Someone set the room's topic (``topic`` None: cleared). The join's is in ``Joined``."""

    room: str
    topic: str | None
    user: str


@dataclass(frozen=True)
class HistoryPage:
    """The answer to :meth:`HubConnection.request_history`: older messages, oldest first.

    ``complete``: the hub keeps nothing older.
    """

    room: str
    messages: tuple[ChatMessage, ...]
    complete: bool
    before: int | None = None


HubEvent = (
    StateChanged
    | JoinedRoom
    | MessageReceived
    | PresenceChanged
    | HubError
    | TopicChanged
    | HistoryPage
)


@dataclass
class Outgoing:
    """A message waiting for the hub's acknowledgement."""

    id: str
    text: str
    emotion: Emotion | None
    action: bool = False
    to: str | None = None

    def frame(self) -> str:
        return protocol.message_frame(
            self.id, self.text, self.emotion, action=self.action, to=self.to
        )


@dataclass
class _GapFill:
    """A resume that pages back for messages older than its ``joined`` history.

    ``since``: the last seq the client had; ``before``: the outstanding request;
    ``missed``: pages so far (oldest first); ``held``: the join's history and
    live messages, reported after ``missed``; ``asked``: every ``before``
    requested, so that the answer to a repeated request is recognised.
    """

    since: int
    before: int
    missed: list[ChatMessage] = field(default_factory=list)
    held: list[ChatMessage] = field(default_factory=list)
    asked: set[int] = field(default_factory=set)


class HubConnection:
    """One client's connection to one room of a hub (see the module docstring)."""

    def __init__(
        self,
        url: str,
        room: str,
        user: str,
        on_event: Callable[[HubEvent], None],
        token: str | None = None,
        min_backoff: float = 0.2,
        max_backoff: float = 5.0,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.room = room
        self.user = user
        self.token = token
        self.on_event = on_event
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.session = protocol.new_session()
        self.state: ConnectionState = "offline"
        self.last_seq: int | None = None
        self.outbox: OrderedDict[str, Outgoing] = OrderedDict()
        self.members: tuple[Member, ...] = ()
        self._seen_ids: OrderedDict[str, None] = OrderedDict()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._bucket = self._new_bucket()
        self._gap: _GapFill | None = None
        self._joined = False  # this socket's join was answered
        self._resend_scheduled = False
        self._failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- public API --------------------------------------------------------

    def send(
        self,
        text: str,
        emotion: Emotion | None,
        *,
        action: bool = False,
        to: str | None = None,
    ) -> str:
        """Queue ``text`` for the room and send it now if online; return its ``id``.

        ``action``: a /me action (``text`` without the "/me "). ``to``: a direct
        message for that member only; the hub refuses it with ``no_such_member``
        (a :class:`HubError` naming this ``id``) if they are not in the room.
        Control characters (a paste may hold some) are replaced by U+FFFD
        first: the hub refuses them, and a refused message would stay pending.
        """
        text = protocol.neutralize(text, text=True)
        message = Outgoing(protocol.new_message_id(), text, emotion, action, to)
        self.outbox[message.id] = message
        # While a resend is due it carries this message too, after the older ones.
        if self.state == "online" and self._ws is not None and not self._resend_scheduled:
            self._spawn(self._transmit(self._ws, message))
        return message.id

    def set_nick(self, name: str, token: str | None = None) -> bool:
        """Ask the hub for the name ``name`` in this room; False if offline (not sent).

        The hub answers with a ``nick`` presence (then :attr:`user` is ``name``)
        or a :class:`HubError` (``name_taken``, ``unauthorized``, ``bad_field``).
        With JWT auth, ``token`` is one issued for ``name``.
        """
        return self._request(protocol.nick_frame(name, token))

    def set_topic(self, text: str) -> bool:
        """Set the room's topic (``""`` clears it); False if offline (not sent)."""
        return self._request(protocol.topic_frame(text))

    def request_history(self, before: int | None, limit: int = protocol.MAX_HISTORY_PAGE) -> bool:
        """Ask for up to ``limit`` messages older than ``before``; answered by a
        :class:`HistoryPage`. False if offline (not sent)."""
        return self._request(protocol.history_request_frame(before, limit))

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged by the hub."""
        return len(self.outbox)

    async def close(self) -> None:
        """Stop reconnecting and close the socket."""
        self._stopping = True
        self._wake.set()
        if self._ws is not None:
            await self._ws.close()

    def reconnect_now(self) -> None:
        """Skip the current backoff wait."""
        self._wake.set()

    async def run(self) -> None:
        """Connect, and keep reconnecting until :meth:`close`."""
        self._failures = 0
        while not self._stopping:
            self._set_state("connecting", self.url)
            try:
                async with connect(self.url, open_timeout=self.open_timeout, max_size=2**20) as ws:
                    self._ws = ws
                    await self._session(ws)
            except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError) as exc:
                detail = _describe(exc)
            except InvalidURI as exc:
                self._set_state("stopped", f"bad server address: {exc}")
                return
            except _Fatal as exc:
                self._set_state("stopped", str(exc))
                return
            else:
                detail = "connection closed"
            finally:
                self._ws = None
            if self._stopping:
                break
            self._failures += 1
            delay = min(self.max_backoff, self.min_backoff * 2 ** (self._failures - 1))
            delay *= random.uniform(0.8, 1.2)
            self._set_state("offline", f"{detail}; retrying in {delay:.1f}s")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):  # builtin only from 3.11
                await asyncio.wait_for(self._wake.wait(), delay)
        self._set_state("stopped", "closed")

    # --- internals ---------------------------------------------------------

    def _request(self, frame: str) -> bool:
        if self.state != "online" or self._ws is None:
            return False
        self._spawn(self._send_paced(self._ws, frame))
        return True

    def _set_state(self, state: ConnectionState, detail: str = "") -> None:
        self.state = state
        self.on_event(StateChanged(state, detail))

    async def _session(self, ws: ClientConnection) -> None:
        self._joined, self._gap = False, None
        # A fresh bucket per connection, like the hub's; the join takes a token.
        self._bucket = self._new_bucket()
        self._bucket.take(time.monotonic())
        await ws.send(
            protocol.join_frame(
                self.room, self.user, since=self.last_seq, token=self.token, session=self.session
            )
        )
        async for raw in ws:
            try:
                frame = protocol.parse_server_frame(raw)
            except protocol.ProtocolError:
                continue  # a newer hub's frame we don't know: skip it, keep the link
            if isinstance(frame, Joined):
                await self._on_joined(ws, frame)
            elif isinstance(frame, ChatMessage):
                self._on_message(frame)
            elif isinstance(frame, Presence):
                self._on_presence(frame)
            elif isinstance(frame, ErrorFrame):
                await self._on_error(ws, frame)
            elif isinstance(frame, Topic):
                self.on_event(TopicChanged(frame.room, frame.topic, frame.user))
            elif isinstance(frame, History):
                self._on_history(ws, frame)

    async def _on_joined(self, ws: ClientConnection, joined: Joined) -> None:
        if self.last_seq is not None and joined.seq < self.last_seq:
            self.last_seq = None  # a fresh hub: its seq restarted; ids still dedupe
        self.members = joined.members
        self._failures = 0  # backoff starts over after every successful join
        self._joined = True
        resend = bool(self.outbox)
        # Set before the events below: a message typed in their handlers must
        # wait for the resend, not overtake what is queued.
        self._resend_scheduled = self._resend_scheduled or resend
        self.state = "online"
        self.on_event(JoinedRoom(joined))
        self.on_event(StateChanged("online", self.url))
        since = self.last_seq
        if joined.truncated and since is not None:
            # More was missed than the join carries: page back for the gap first.
            first = joined.history[0].seq if joined.history else joined.seq + 1
            self._gap = _GapFill(since, first, held=list(joined.history))
            self._ask_gap(ws, first)
        else:
            for message in joined.history:
                self._on_message(message)
        if resend:  # in a task: the paced resend must not stall reading
            self._spawn(self._resend_later(ws, 0.0))

    def _on_presence(self, presence: Presence) -> None:
        self.members = presence.members
        if presence.event == "nick" and presence.old == self.user:
            self.user = presence.user  # ours: rejoin under the new name
        self.on_event(PresenceChanged(presence))

    def _ask_gap(self, ws: ClientConnection, before: int, delay: float = 0.0) -> None:
        assert self._gap is not None
        self._gap.before = before
        self._gap.asked.add(before)
        frame = protocol.history_request_frame(before)
        self._spawn(self._send_paced(ws, frame, delay=delay))

    def _on_history(self, ws: ClientConnection, page: History) -> None:
        gap = self._gap
        if gap is None or page.before not in gap.asked:
            self.on_event(HistoryPage(page.room, page.messages, page.complete, page.before))
            return
        if page.before != gap.before:
            return  # a repeated request's second answer: that page is in already
        gap.missed[:0] = [m for m in page.messages if m.seq > gap.since]
        oldest = page.messages[0].seq if page.messages else gap.since + 1
        if page.complete or oldest <= gap.since + 1:
            self._end_gap()
            return
        self._ask_gap(ws, oldest)

    def _end_gap(self) -> None:
        """Report the paged gap, then what the join and the room sent meanwhile."""
        gap, self._gap = self._gap, None
        if gap is None:
            return
        for message in gap.missed + gap.held:
            self._on_message(message)

    def _on_message(self, message: ChatMessage) -> None:
        if self._gap is not None:
            self._gap.held.append(message)
            return
        # A direct message carries the room's seq only to place it: not a resume point.
        if message.to is None and (self.last_seq is None or message.seq > self.last_seq):
            self.last_seq = message.seq
        if message.id in self._seen_ids:
            return
        self._seen_ids[message.id] = None
        if len(self._seen_ids) > 5000:
            self._seen_ids.popitem(last=False)
        own = self.outbox.pop(message.id, None) is not None or message.user == self.user
        self.on_event(MessageReceived(message, own))

    async def _on_error(self, ws: ClientConnection, error: ErrorFrame) -> None:
        if error.id is not None:
            self.outbox.pop(error.id, None)  # refused for good (a DM to no one): no resend
        self.on_event(HubError(error))
        if error.code in FATAL_ERRORS and not self._joined:
            raise _Fatal(f"hub refused: {error.message}")
        if self._gap is not None and error.code in NO_PAGING_ERRORS:
            self._end_gap()  # a hub without history paging: report what we have
        elif self._gap is not None and error.code == "rate_limited":
            # Perhaps our request was the one dropped: ask again (a second answer is ignored).
            self._ask_gap(ws, self._gap.before, delay=RESEND_ERRORS["rate_limited"])
        if error.code in RESEND_ERRORS and not self._resend_scheduled:
            # A message was dropped (the hub is stricter than our pacing, or its
            # shared storage is down): resend everything pending a little later;
            # the hub ignores duplicates.
            self._resend_scheduled = True
            self._spawn(self._resend_later(ws, RESEND_ERRORS[error.code]))

    async def _resend_later(self, ws: ClientConnection, delay: float) -> None:
        """Send everything pending, oldest first, holding the send lock throughout:
        a message typed meanwhile waits for the lock and so goes after them."""
        await asyncio.sleep(delay)
        async with self._send_lock:
            self._resend_scheduled = False
            for message in list(self.outbox.values()):
                await self._send_now(ws, message)

    async def _transmit(self, ws: ClientConnection, message: Outgoing) -> None:
        """Send ``message`` in order, paced by the hub's default rate limit."""
        async with self._send_lock:
            await self._send_now(ws, message)

    async def _send_now(self, ws: ClientConnection, message: Outgoing) -> None:
        await self._take_token()
        if message.id not in self.outbox:
            return  # acknowledged while it waited
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message.frame())

    async def _send_paced(self, ws: ClientConnection, frame: str, delay: float = 0.0) -> None:
        """Send a request frame in turn with messages, paced like them."""
        await asyncio.sleep(delay)
        async with self._send_lock:
            await self._take_token()
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

    async def _take_token(self) -> None:
        """Wait for the hub's token bucket, mirrored here, so no frame is refused."""
        while not self._bucket.take(time.monotonic()):
            await asyncio.sleep(self._bucket.wait(time.monotonic()))

    @staticmethod
    def _new_bucket() -> TokenBucket:
        return TokenBucket(protocol.RATE_PER_SECOND, protocol.RATE_BURST, time.monotonic())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Fatal(Exception):
    """The hub refused us for good (bad token, invalid name)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "hub not reachable"
    if isinstance(exc, asyncio.TimeoutError):
        return "hub did not answer"
    if isinstance(exc, ConnectionClosed):
        return "hub went away"
    return str(exc) or type(exc).__name__
