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
  (the hub drops duplicates), so nothing typed is lost or shown twice.

Frames are built and parsed only by :mod:`hub.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hub import protocol
from hub.protocol import ChatMessage, Emotion, ErrorFrame, Joined, Member, Presence

ConnectionState = Literal["connecting", "online", "offline", "stopped"]

#: Errors after which retrying cannot help.
FATAL_ERRORS = frozenset({"unauthorized", "bad_field", "name_taken"})
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
    presence: Presence


@dataclass(frozen=True)
class HubError:
    error: ErrorFrame


HubEvent = StateChanged | JoinedRoom | MessageReceived | PresenceChanged | HubError


@dataclass
class Outgoing:
    """A message waiting for the hub's acknowledgement."""

    id: str
    text: str
    emotion: Emotion | None


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
        self._tokens = float(protocol.RATE_BURST)
        self._refilled = time.monotonic()
        self._resend_scheduled = False
        self._failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- public API --------------------------------------------------------

    def send(self, text: str, emotion: Emotion | None) -> str:
        """Queue ``text`` for the room and send it now if online; return its ``id``.

        Control characters (a paste may hold some) are replaced by U+FFFD
        first: the hub refuses them, and a refused message would stay pending.
        """
        text = protocol.neutralize(text, text=True)
        message = Outgoing(protocol.new_message_id(), text, emotion)
        self.outbox[message.id] = message
        if self.state == "online" and self._ws is not None:
            self._spawn(self._transmit(self._ws, message))
        return message.id

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

    def _set_state(self, state: ConnectionState, detail: str = "") -> None:
        self.state = state
        self.on_event(StateChanged(state, detail))

    async def _session(self, ws: ClientConnection) -> None:
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
                self.members = frame.members
                self.on_event(PresenceChanged(frame))
            elif isinstance(frame, ErrorFrame):
                await self._on_error(ws, frame)

    async def _on_joined(self, ws: ClientConnection, joined: Joined) -> None:
        if self.last_seq is not None and joined.seq < self.last_seq:
            self.last_seq = None  # a fresh hub: its seq restarted; ids still dedupe
        self.members = joined.members
        self._failures = 0  # backoff starts over after every successful join
        # A fresh bucket per connection, like the hub's; the join frame took one token.
        self._tokens, self._refilled = float(protocol.RATE_BURST - 1), time.monotonic()
        self.state = "online"
        self.on_event(JoinedRoom(joined))
        self.on_event(StateChanged("online", self.url))
        for message in joined.history:
            self._on_message(message)
        if self.outbox:  # in a task: the paced resend must not stall reading
            self._spawn(self._resend_later(ws, 0.0))

    def _on_message(self, message: ChatMessage) -> None:
        if self.last_seq is None or message.seq > self.last_seq:
            self.last_seq = message.seq
        if message.id in self._seen_ids:
            return
        self._seen_ids[message.id] = None
        if len(self._seen_ids) > 5000:
            self._seen_ids.popitem(last=False)
        own = self.outbox.pop(message.id, None) is not None or message.user == self.user
        self.on_event(MessageReceived(message, own))

    async def _on_error(self, ws: ClientConnection, error: ErrorFrame) -> None:
        self.on_event(HubError(error))
        if error.code in FATAL_ERRORS:
            raise _Fatal(f"hub refused: {error.message}")
        if error.code in RESEND_ERRORS and not self._resend_scheduled:
            # A message was dropped (the hub is stricter than our pacing, or its
            # shared storage is down): resend everything pending a little later;
            # the hub ignores duplicates.
            self._resend_scheduled = True
            self._spawn(self._resend_later(ws, RESEND_ERRORS[error.code]))

    async def _resend_later(self, ws: ClientConnection, delay: float) -> None:
        await asyncio.sleep(delay)
        self._resend_scheduled = False
        for message in list(self.outbox.values()):
            await self._transmit(ws, message)

    async def _transmit(self, ws: ClientConnection, message: Outgoing) -> None:
        """Send ``message`` in order, paced by the hub's default rate limit."""
        async with self._send_lock:
            await self._take_token()
            if message.id not in self.outbox:
                return  # acknowledged while it waited
            with contextlib.suppress(ConnectionClosed):
                await ws.send(protocol.message_frame(message.id, message.text, message.emotion))

    async def _take_token(self) -> None:
        """Token bucket mirroring the hub's, so a burst of typing is never refused."""
        rate, burst = protocol.RATE_PER_SECOND, protocol.RATE_BURST
        now = time.monotonic()
        self._tokens = min(float(burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / rate)
            self._tokens, self._refilled = 1.0, time.monotonic()
        self._tokens -= 1.0

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
