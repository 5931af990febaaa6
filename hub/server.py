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
* The HTTP handshake (``process_request``) answers the operator endpoints
  ``GET /healthz`` and ``GET /metrics`` (:mod:`hub.metrics`) and refuses,
  before any WebSocket state exists, a full hub (503) and an address over its
  handshake rate (429) or its open connections (503): :class:`IpGate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import protocol
from .auth import DEFAULT_LEEWAY, Authorizer, JwtAuthorizer, JwtKey, SharedSecret
from .cluster import Call, ClusterHub, DirectCall, PostCall
from .metrics import CONTENT_TYPE, HubMetrics
from .protocol import Limits
from .rooms import Action, Broadcast, Client, Close, Hub, Reply, TokenBucket
from .storage import HISTORY_KEEP, MemoryStore, SqliteStore, Store

if TYPE_CHECKING:
    from .redis_engine import Lane, RedisEngine

__all__ = ["HubConfig", "IpGate", "RunningHub", "serve_hub"]

logger = logging.getLogger("hub")

#: Default cap on a member's unread backlog in the hub, in bytes.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024
#: Default cap on open WebSocket connections; more are refused with HTTP 503.
MAX_CONNECTIONS = 5000
#: Default handshakes one address may start per minute; more get HTTP 429.
MAX_HANDSHAKES_PER_IP = 60
#: Default connections one address may hold open; more get HTTP 503.
MAX_CONNECTIONS_PER_IP = 32
#: Addresses the per-IP limits skip by default: this machine (the embedded
#: hub, tests, benchmarks and a reverse proxy on the same host, whose clients
#: all share its address; limit per client at such a proxy).
IP_LIMIT_EXEMPT = ("127.0.0.0/8", "::1/128")
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class HubConfig:
    """Everything a hub needs; every field has a ``fer-hub`` flag."""

    host: str = "127.0.0.1"
    port: int = 8765
    limits: Limits = protocol.DEFAULT_LIMITS
    token: str | None = None  # shared secret (weaker than jwt_key: names are not bound)
    jwt_key: JwtKey | None = None  # signed per-user tokens; excludes ``token``
    jwt_leeway: float = DEFAULT_LEEWAY  # seconds of clock difference for exp/nbf/iat
    history_db: Path | None = None
    history_keep: int = HISTORY_KEEP  # per room (memory, SQLite, Redis); never below history_size
    certfile: Path | None = None
    keyfile: Path | None = None
    max_backlog_bytes: int = MAX_BACKLOG_BYTES
    max_connections: int = MAX_CONNECTIONS
    max_handshakes_per_ip: int = MAX_HANDSHAKES_PER_IP  # per minute; 0: unlimited
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP  # 0: unlimited
    ip_limit_exempt: tuple[str, ...] = IP_LIMIT_EXEMPT  # networks the two above skip
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

    def authorizer(self) -> Authorizer | None:
        """The join check: signed tokens, the shared secret, or None (anyone may join)."""
        if self.jwt_key is not None:
            if self.token is not None:
                raise ValueError("token and jwt_key exclude each other")
            return JwtAuthorizer(self.jwt_key, self.jwt_leeway)
        return None if self.token is None else SharedSecret(self.token)


class IpGate:
    """Per-address admission at the handshake: a rate and a cap on open connections.

    Sans-I/O like the core: the socket layer asks :meth:`admit` with the
    peer's address and the time, and reports :meth:`opened` / :meth:`closed`.
    An IPv6 address counts per /64, which one host or customer usually holds
    whole; addresses in ``exempt`` are not limited.
    """

    def __init__(self, per_minute: int, max_open: int, exempt: Iterable[str] = ()) -> None:
        self.per_minute = per_minute
        self.max_open = max_open
        self.exempt = [ipaddress.ip_network(network) for network in exempt]
        self.open: Counter[str] = Counter()
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = 4096  # bucket count that triggers dropping idle buckets

    def key(self, host: str) -> str | None:
        """What ``host`` is counted as, or None if it is exempt."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host  # not an IP (a Unix socket path): one key
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def admit(self, key: str, now: float) -> tuple[int, str, float] | None:
        """None to let ``key`` in, else (HTTP status, reason, seconds to wait)."""
        if self.max_open and self.open[key] >= self.max_open:
            return 503, "ip_connections", 0.0
        if self.per_minute:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._sweep(now)
                bucket = self._buckets[key] = TokenBucket(
                    self.per_minute / 60.0, self.per_minute, now
                )
            if not bucket.take(now):
                return 429, "ip_rate", (1.0 - bucket.tokens) / bucket.rate
        return None

    def opened(self, key: str) -> None:
        self.open[key] += 1

    def closed(self, key: str) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]

    def _sweep(self, now: float) -> None:
        """Drop buckets idle for a minute (full again), amortised O(1) per new key."""
        if len(self._buckets) < self._sweep_at:
            return
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.last < 60.0}
        self._sweep_at = max(4096, 2 * len(self._buckets))


@dataclasses.dataclass(eq=False, slots=True)
class _Link:
    """What the socket layer tracks per connection beside the core's state."""

    ws: ServerConnection
    sent_bytes: int = 0  # bytes queued for this peer, frame headers included
    frames_in: int = 0
    pending: list[bytes] = dataclasses.field(default_factory=list)
    pending_bytes: int = 0
    lane: Lane | None = None  # its posts out to Redis (a --redis hub)

    def backlog(self) -> int:
        """Bytes written for this peer that it has not taken yet, as far as we know."""
        return self.pending_bytes + self.ws.transport.get_write_buffer_size()


class RunningHub:
    """A hub that is serving; returned by :func:`serve_hub`."""

    def __init__(self, config: HubConfig, store: Store) -> None:
        self.config = config
        self.core: Hub = Hub(config.limits, store, auth=config.authorizer())
        self.engine: RedisEngine | None = None
        self.open_connections = 0  # WebSocket connections past the handshake
        self.metrics = HubMetrics(
            connections=lambda: self.open_connections,
            rooms=lambda: len(self.core.rooms),
            redis=config.redis_url is not None,
        )
        if config.redis_url is not None:
            self.core, self.engine = _redis_core(config, self._perform)
            self.engine.on_round_trip = self.metrics.observe_redis
        self.gate = IpGate(
            config.max_handshakes_per_ip, config.max_connections_per_ip, config.ip_limit_exempt
        )
        self.closing = False
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
        self.closing = True
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
        """Answer the operator endpoints; refuse a full hub or a greedy address.

        Refusing before the upgrade costs no WebSocket state, and a client
        reads the status and backs off as from any failed connect.
        """
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return self._healthz(connection)
        if path == "/metrics":
            response = connection.respond(200, self.metrics.exposition().decode())
            response.headers["Content-Type"] = CONTENT_TYPE
            return response
        assert self.server is not None
        address = connection.remote_address
        if len(self.server.connections) >= self.config.max_connections:
            logger.warning("refusing %s: %d connections open", address, self.config.max_connections)
            self.metrics.http_refusals["hub_full"] += 1
            return connection.respond(503, "hub full: too many connections, retry later\n")
        key = self.gate.key(str(address[0])) if address else None
        if key is None:
            return None
        refused = self.gate.admit(key, time.monotonic())
        if refused is None:
            self.gate.opened(key)
            # Exact even if the handshake or the handler never completes.
            connection.connection_lost_waiter.add_done_callback(lambda _: self.gate.closed(key))
            return None
        status, reason, wait = refused
        self.metrics.http_refusals[reason] += 1
        logger.debug("refusing %s: %s", address, reason)  # counted in /metrics: no log flood
        if status == 429:
            response = connection.respond(
                429, f"too many connection attempts from {key}; retry later\n"
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        return connection.respond(503, f"too many open connections from {key}\n")

    def _healthz(self, connection: ServerConnection) -> Response:
        """200 while serving; 503 while shutting down or cut off from Redis."""
        if self.closing:
            return connection.respond(503, "shutting down\n")
        if self.engine is not None and not self.engine.reachable:
            return connection.respond(503, "redis unreachable\n")
        return connection.respond(200, "ok\n")

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(ws, lane=None if self.engine is None else self.engine.new_lane())
        self.open_connections += 1
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
                self.metrics.frames_received += 1
                if isinstance(raw, str):
                    actions = self.core.receive_text(client, raw, time.time())
                else:
                    actions = self.core.receive_binary(client)
                if self.engine is None:
                    self._perform(actions)
                elif (post := _post_of(actions)) is not None and link.lane is not None:
                    if self.engine.must_wait(link.lane):
                        await link.lane.answered()
                    self.engine.submit(post, link.lane)
                else:
                    # Any other call waits for the posts before it, and is waited
                    # for: a connection's frames keep their order.
                    await self._posts_answered(link)
                    await self._carry_out(actions)
        except ConnectionClosed:
            pass
        finally:
            self.open_connections -= 1
            keepalive.cancel()
            deadline.cancel()
            await self._posts_answered(link)
            await self._carry_out(self.core.disconnect(client))
            logger.debug(
                "%s (%s) disconnected: %s %s",
                ws.remote_address,
                client.user,
                ws.close_code,
                ws.close_reason,
            )

    async def _posts_answered(self, link: _Link) -> None:
        """Wait for the answers to ``link``'s posts out to Redis: its next call goes after them."""
        if link.lane is not None and link.lane.out:
            await link.lane.answered()

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
                self.metrics.count_frame(action.frame, len(action.clients))
            elif isinstance(action, Reply):
                self._send((action.client,), action.frame)
                self.metrics.count_frame(action.frame, 1)
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
        queued = 0
        for client in clients:  # the hot loop of a burst: keep it lean
            link: _Link = client.handle
            ws = link.ws
            if ws.protocol.state is not open_:
                continue
            if link.pending_bytes + ws.transport.get_write_buffer_size() > cap:
                logger.warning("closing slow consumer %s", client.user)
                self.metrics.slow_consumer_evictions += 1
                self._evict(client, protocol.CLOSE_POLICY_VIOLATION, "slow_consumer")
                continue
            pending = link.pending
            if not pending:
                dirty.append(link)
            pending.append(data)
            link.pending_bytes += size
            link.sent_bytes += size
            queued += 1
        self.metrics.frames_sent += queued
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
                    # ignore: ws.ping() is typed Awaitable[float]; it returns an asyncio.Future.
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


def _post_of(actions: list[Action]) -> PostCall | DirectCall | None:
    """The post when ``actions`` is just a chat message to store; None otherwise."""
    if len(actions) != 1 or not isinstance(action := actions[0], Call):
        return None
    return action.request if isinstance(action.request, PostCall | DirectCall) else None


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
    core = ClusterHub(config.limits, None, config.hub_id or new_hub_id(), auth=config.authorizer())
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
