"""Socket layer of the hub on ``websockets.asyncio.server``; embeddable.

How the client runs a hub in its own process (no ``--server``)::

    from hub.server import HubConfig, serve_hub

    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as running:
        url = running.url            # "ws://127.0.0.1:<ephemeral port>"
        ...                          # connect to url like to any hub
    # leaving the block closes every connection (1001) and flushes storage

``port=0`` picks a free port (``running.port``). The same
:class:`HubConfig` drives ``fer-hub`` (:mod:`hub.__main__`).

Design:

* All room logic lives in the sans-I/O :class:`hub.rooms.Hub`; this module
  reads frames, hands them over and carries out the returned actions.
* Sending never awaits, as with :func:`websockets.asyncio.server.broadcast`,
  so a slow reader cannot stall a room. Each frame is JSON-encoded and framed
  once (server frames are unmasked, so the bytes are the same for everyone),
  queued per member, and what a member got during one event-loop iteration is
  written with one syscall: under a burst that saves a send() per delivery.
* A member whose unread backlog passes ``max_backlog_bytes`` is closed with
  1008 ``slow_consumer`` instead of growing the hub's memory without bound;
  it rejoins with ``since`` and gets what it missed from history.
* Keepalive judges idle connections only. Under a burst a ping queues behind
  every frame the hub already wrote to that client, and its pong behind every
  frame the client is still reading or sending, so the round trip measures the
  backlog (often the hub's own, when it is the one behind), not the client's
  health: websockets' keepalive would close such a busy client after
  ``ping_timeout``. Here a missing pong closes a connection (1011) only if no
  frame went either way and its write buffer did not move during the whole
  ``ping_timeout``. A busy connection is judged by its backlog instead, so a
  dead peer is still found: by the keepalive when the room is quiet, by the
  ``max_backlog_bytes`` cap when it is not, and memory stays bounded.
* Per-message compression is off: it would compress each broadcast once per
  member and cost far more CPU than it saves on short JSON frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import protocol
from .cluster import Call, ClusterHub
from .protocol import Limits
from .rooms import Action, Broadcast, Client, Close, Hub, Reply
from .storage import HISTORY_KEEP, MemoryStore, SqliteStore, Store

if TYPE_CHECKING:
    from .redis_engine import RedisEngine

__all__ = ["HubConfig", "RunningHub", "serve_hub"]

logger = logging.getLogger("hub")

#: Default cap on a member's unread backlog in the hub, in bytes.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024
#: Default cap on open WebSocket connections; more are refused with HTTP 503.
MAX_CONNECTIONS = 5000
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class HubConfig:
    """Everything a hub needs; every field has a ``fer-hub`` flag."""

    host: str = "127.0.0.1"
    port: int = 8765
    limits: Limits = protocol.DEFAULT_LIMITS
    token: str | None = None
    history_db: Path | None = None
    history_keep: int = HISTORY_KEEP  # per room (memory, SQLite, Redis); never below history_size
    certfile: Path | None = None
    keyfile: Path | None = None
    max_backlog_bytes: int = MAX_BACKLOG_BYTES
    max_connections: int = MAX_CONNECTIONS
    ping_interval: float | None = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    close_timeout: float = 5.0
    redis_url: str | None = None  # share rooms with other hubs through this Redis
    redis_heartbeat: float = 1.0  # seconds; a hub silent for 5 beats leaves presence
    hub_id: str | None = None  # random when None

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return the TLS context for ``wss://``, or None for ``ws://``."""
        if self.certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


@dataclasses.dataclass(eq=False, slots=True)
class _Link:
    """What the socket layer tracks per connection beside the core's state."""

    ws: ServerConnection
    sent_bytes: int = 0  # bytes queued for this peer, frame headers included
    frames_in: int = 0
    pending: list[bytes] = dataclasses.field(default_factory=list)
    pending_bytes: int = 0

    def backlog(self) -> int:
        """Bytes written for this peer that it has not taken yet, as far as we know."""
        return self.pending_bytes + self.ws.transport.get_write_buffer_size()


class RunningHub:
    """A hub that is serving; returned by :func:`serve_hub`."""

    def __init__(self, config: HubConfig, store: Store) -> None:
        self.config = config
        self.core: Hub = Hub(config.limits, store, config.token)
        self.engine: RedisEngine | None = None
        if config.redis_url is not None:
            self.core, self.engine = _redis_core(config, self._perform)
        self.server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty: list[_Link] = []  # links with pending frames
        self._flush_scheduled = False

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[0]

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.certfile is not None else "ws"
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        config = self.config
        if self.engine is not None:
            await self.engine.start()
        self.server = await serve(
            self._handle,
            config.host,
            config.port,
            ssl=config.ssl_context(),
            compression=None,
            # Frames up to 4x the limit are read and refused with an error
            # frame; larger ones are cut off by websockets (close 1009).
            max_size=4 * config.limits.max_frame_bytes,
            ping_interval=None,  # see _keepalive
            close_timeout=config.close_timeout,
            process_request=self._admit,
        )
        logger.info("hub listening on %s", self.url)

    async def close(self) -> None:
        """Close every connection with 1001, wait for handlers, flush storage."""
        self._flush()  # acks queued in this iteration go out before the close frames
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self.engine is not None:
            await self.engine.close()
        self.core.store.close()
        logger.info("hub closed")

    # --- per connection -------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake with 503 when ``max_connections`` are open.

        Refusing before the upgrade costs no WebSocket state, and a client
        reads the status and backs off as from any failed connect.
        """
        assert self.server is not None
        if len(self.server.connections) < self.config.max_connections:
            return None
        logger.warning(
            "refusing %s: %d connections open",
            connection.remote_address,
            self.config.max_connections,
        )
        return connection.respond(503, "hub full: too many connections, retry later\n")

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(ws)
        client = self.core.connect(time.time(), handle=link)
        keepalive = self._spawn(self._keepalive(client))
        deadline = asyncio.get_running_loop().call_later(
            self.config.limits.join_timeout,
            lambda: self._perform(self.core.join_deadline(client)),
        )
        logger.debug("%s connected", ws.remote_address)
        try:
            async for raw in ws:
                link.frames_in += 1
                if isinstance(raw, str):
                    actions = self.core.receive_text(client, raw, time.time())
                else:
                    actions = self.core.receive_binary(client)
                if self.engine is None:
                    self._perform(actions)
                else:
                    # One call at a time per connection: its frames keep their order.
                    await self._carry_out(actions)
        except ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
            deadline.cancel()
            await self._carry_out(self.core.disconnect(client))
            logger.debug(
                "%s (%s) disconnected: %s %s",
                ws.remote_address,
                client.user,
                ws.close_code,
                ws.close_reason,
            )

    async def _carry_out(self, actions: Iterable[Action]) -> None:
        """Perform ``actions``, waiting for each engine call and then its outcome."""
        for action in actions:
            if isinstance(action, Call) and self.engine is not None:
                await self._carry_out(await self.engine.execute(action.request))
            else:
                self._perform((action,))

    def _perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self._send(action.clients, action.frame)
            elif isinstance(action, Reply):
                self._send((action.client,), action.frame)
            elif isinstance(action, Close):
                link: _Link = action.client.handle
                self._flush_link(link)  # what was said before the close goes first
                self._spawn(link.ws.close(action.code, action.reason))
            elif isinstance(action, Call) and self.engine is not None:
                self.engine.dispatch((action,))

    def _send(self, clients: Iterable[Client], frame: str) -> None:
        """Queue ``frame`` for each client without waiting; see :meth:`_flush`.

        The frame is encoded and framed once: server frames are unmasked, so
        the bytes are the same for every recipient.
        """
        data = _text_frame(frame.encode())
        size = len(data)
        cap, dirty, open_ = self.config.max_backlog_bytes, self._dirty, State.OPEN
        for client in clients:  # the hot loop of a burst: keep it lean
            link: _Link = client.handle
            ws = link.ws
            if ws.protocol.state is not open_:
                continue
            if link.pending_bytes + ws.transport.get_write_buffer_size() > cap:
                logger.warning("closing slow consumer %s", client.user)
                self._evict(client, protocol.CLOSE_POLICY_VIOLATION, "slow_consumer")
                continue
            pending = link.pending
            if not pending:
                dirty.append(link)
            pending.append(data)
            link.pending_bytes += size
            link.sent_bytes += size
        if self._dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what each peer got during this loop iteration in one syscall.

        Under a burst, one iteration routes many messages to the same peer;
        coalescing them saves a send() per delivery. A lone message waits one
        loop iteration at most.
        """
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            self._flush_link(link)

    def _flush_link(self, link: _Link) -> None:
        if not link.pending:
            return
        chunks, link.pending, link.pending_bytes = link.pending, [], 0
        transport = link.ws.transport
        if link.ws.protocol.state is State.OPEN and not transport.is_closing():
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _evict(self, client: Client, code: int, reason: str) -> None:
        """Take ``client`` out of its room now, then close its connection.

        The close handshake may never finish with a peer that does not read,
        so the room must not wait for it (websockets aborts after close_timeout).
        """
        link: _Link = client.handle
        link.pending, link.pending_bytes = [], 0  # it will not read them anyway
        self._perform(self.core.disconnect(client))
        self._spawn(link.ws.close(code, reason))

    async def _keepalive(self, client: Client) -> None:
        """Ping periodically; drop only a peer that shows no sign of life."""
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        if interval is None:
            return
        link: _Link = client.handle
        ws = link.ws
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                pong = await ws.ping()
                while True:
                    before = self._activity(link)
                    await asyncio.wait([asyncio.ensure_future(pong)], timeout=timeout)
                    if pong.done():  # type: ignore[attr-defined]
                        break
                    if self._activity(link) == before:
                        logger.info(
                            "%s: no pong and no traffic for %ss", ws.remote_address, timeout
                        )
                        self._evict(client, 1011, "keepalive ping timeout")
                        return
                    # Traffic flowed, so the pong may be queued behind it: wait on.

    @staticmethod
    def _activity(link: _Link) -> tuple[int, int, int]:
        """What changes whenever frames flow either way on ``link``."""
        return link.frames_in, link.sent_bytes, link.backlog()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionClosed):
            logger.error("background task failed", exc_info=exc)


def _text_frame(payload: bytes) -> bytes:
    """Serialize an unmasked, final text frame (RFC 6455 5.2) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


def _redis_core(
    config: HubConfig, perform: Callable[[Iterable[Action]], None]
) -> tuple[ClusterHub, RedisEngine]:
    """The core and engine of a hub that shares its rooms through Redis."""
    try:
        from .redis_engine import RedisEngine, new_hub_id
    except ImportError as exc:
        raise RuntimeError(
            f"--redis needs the redis package: pip install 'fer-tms[redis]' ({exc})"
        ) from None
    core = ClusterHub(config.limits, config.token, config.hub_id or new_hub_id())
    engine = RedisEngine(
        config.redis_url or "",
        core,
        perform,
        history_keep=config.history_keep,
        heartbeat=config.redis_heartbeat,
    )
    return core, engine


def open_store(config: HubConfig) -> Store:
    """Return the store for ``--history-db`` (SQLite) or memory."""
    keep = max(config.history_keep, config.limits.history_size)
    if config.history_db is None:
        return MemoryStore(keep)
    return SqliteStore(config.history_db, keep)


@contextlib.asynccontextmanager
async def serve_hub(config: HubConfig | None = None) -> AsyncIterator[RunningHub]:
    """Run a hub for the duration of the ``async with`` block."""
    config = config if config is not None else HubConfig()
    running = RunningHub(config, open_store(config))
    try:
        await running.start()
        yield running
    finally:
        await running.close()
