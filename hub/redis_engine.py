"""Shared rooms on Redis (``fer-hub --redis URL``): the I/O half of :mod:`hub.cluster`.

The keys and the scripts that change them are in :mod:`hub.redis_scripts`;
which server each key lives on (one server, or a Redis Cluster's primaries)
is :mod:`hub.redis_nodes`' business.

A message is acknowledged (its event delivered to the sender) only after
the script that stored it has run; run Redis with ``appendonly yes`` so that
"stored" survives a Redis restart. Each hub subscribes to the rooms it has
members in (sharded pub/sub where Redis has it: on a cluster, a room's
channel lives on its keys' node), delivers events in ``pos`` order and, when
a ``pos`` is missing (the subscription dropped), re-reads the room
(:class:`~hub.cluster.SyncCall`). Hubs beat every ``heartbeat`` seconds; any
hub removes a hub whose beat expired from presence, with the ``leave`` events
its members' rooms expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisError,
    TryAgainError,
)

from . import protocol
from .cluster import (
    Call,
    ClusterHub,
    DirectCall,
    HistoryCall,
    JoinCall,
    JoinResult,
    LeaveCall,
    NickCall,
    PostCall,
    Request,
    SyncCall,
    SyncResult,
    TopicCall,
    decode_event,
    parse_members,
)
from .protocol import ChatMessage
from .redis_nodes import RedisNodes, read_replies, redacted
from .redis_scripts import Script, hub_key, hubs_base, room_base, room_key, scripts
from .rooms import Action

__all__ = ["HEARTBEAT", "Lane", "RedisEngine", "new_hub_id", "room_command", "room_key"]

logger = logging.getLogger("hub.redis")

#: Seconds between heartbeats. A beat lives ``HEARTBEAT_TTL_BEATS`` intervals; a hub
#: whose beat has been gone for as long again is removed from presence.
HEARTBEAT: float = 1.0
HEARTBEAT_TTL_BEATS: int = 3
#: Connections a hub may hold to each Redis server: it uses two, the one all its
#: calls share (:class:`~hub.redis_nodes.Multiplexed`) and its subscription.
REDIS_CONNECTIONS: int = 8
#: Scripts sent in one pipeline, beyond which a batch is cut (between lanes only).
MAX_PIPELINE: int = 64
#: Posts one connection may have out to Redis at once before it waits for answers.
MAX_POSTS_IN_FLIGHT: int = 64
#: Seconds Redis remembers a direct message's id, to acknowledge a resend again.
DIRECT_DEDUP_SECONDS: int = 3600
#: Times a call follows a cluster's redirection (``MOVED``, ``ASK``) or waits out a
#: ``TRYAGAIN`` (the keys of a slot half migrated: a couple of seconds at most).
MAX_REDIRECTS: int = 40
#: Seconds before a call retries after ``TRYAGAIN`` (a slot half migrated).
TRY_AGAIN_PAUSE: float = 0.05
#: Seconds before a call retries after ``CLUSTERDOWN`` (a primary failing over):
#: ``MAX_REDIRECTS`` of them ride out an election of a few seconds.
CLUSTER_DOWN_PAUSE: float = 0.1
#: Least seconds between two reads of a cluster's slot map after calls to a node
#: failed: the node may be dead and its slots served by a promoted replica.
MAP_REREAD_PAUSE: float = 0.5
#: Errors that mean "Redis is unreachable or failed", not "the script refused".
UNREACHABLE = (RedisError, OSError, asyncio.TimeoutError)
#: Error replies that mean "ask another node", on a cluster.
REDIRECTED = (AskError, TryAgainError, ClusterDownError)

#: What a client is told when its call could not reach Redis.
STORAGE_UNREACHABLE = "the hub cannot reach its storage; retry soon"
#: Pub/sub replies that carry an event (plain and sharded pub/sub).
_EVENTS = ("message", "smessage")
#: A call waiting for its reply: key, command, where the reply goes, tries, lane
#: (see :meth:`RedisEngine.submit`).
_Pending = tuple[str, tuple[Any, ...], "asyncio.Future[Any] | _Answer", int, "Lane | None"]


def new_hub_id() -> str:
    """A random id for one hub process (its connections are ``<id>.<n>``)."""
    return secrets.token_hex(4)


class RedisEngine:
    """Carries out :class:`hub.cluster.ClusterHub`'s calls and feeds it Redis' events.

    ``perform`` carries out actions that need no engine (replies, broadcasts,
    closes); the engine runs :class:`~hub.cluster.Call` actions itself.
    """

    def __init__(
        self,
        url: str,
        core: ClusterHub,
        perform: Callable[[Iterable[Action]], None],
        *,
        history_keep: int,
        heartbeat: float = HEARTBEAT,
        prefix: str = "fer:",
    ) -> None:
        self.url = url
        self.core = core
        self.perform = perform
        self.history_keep = max(history_keep, core.limits.history_size)
        self.heartbeat = heartbeat
        self.ttl_ms = int(heartbeat * HEARTBEAT_TTL_BEATS * 1000)
        self.prefix = prefix
        self.hub_id = core.hub_id
        self.nodes = RedisNodes(
            url,
            connections=REDIS_CONNECTIONS,
            socket_timeout=max(5.0, heartbeat * 2),
            connect_timeout=max(1.0, heartbeat),
        )
        self._scripts = scripts(sharded=False)  # until connected
        self._hubs_key = hubs_base(prefix)
        self._rooms_key = hub_key(prefix, self.hub_id, "rooms")
        self._control = f"{prefix}hub:{self.hub_id}:control"  # keeps a subscription open
        self._shards: dict[int, PubSub] = {}  # id(pool) -> subscription on that server
        self._listeners: dict[int, asyncio.Task[None]] = {}
        self._shard_lock = asyncio.Lock()
        self._resubscribing = False
        self._lost_again = False
        self._subscribed: dict[str, asyncio.Future[None]] = {}  # channel -> confirmed
        self._room_of: dict[str, str] = {}  # channel -> room
        self._shard_of: dict[str, int] = {}  # channel -> id(pool) of its subscription
        self._registered: set[str] = set()  # rooms in this hub's registry in Redis
        self._reregister_beats = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leaves: list[LeaveCall] = []  # to retry when Redis is back
        self._down_since: float | None = None
        self._map_reread_at = -math.inf
        self._closing = False
        self._queue: list[_Pending] = []
        self._flush_scheduled = False
        #: Loop turns whose calls were sent; see :meth:`submit`.
        self.flushes = 0
        #: Called with the seconds each pipelined batch took to Redis and back.
        self.on_round_trip: Callable[[float], None] | None = None

    @property
    def reachable(self) -> bool:
        """False from a failed call until a heartbeat reaches Redis again."""
        return self._down_since is None

    # --- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register this hub and start listening; raise if Redis is unreachable."""
        try:
            await self.nodes.connect()
            self._scripts = scripts(sharded=self.nodes.sharded)
            await self._hubs("beat", self.hub_id, self.ttl_ms)
        except UNREACHABLE as exc:
            raise RuntimeError(f"cannot reach redis at {redacted(self.url)}: {exc}") from None
        self._spawn(self._beat_forever())
        kind = "cluster" if self.nodes.is_cluster else "server"
        logger.info("hub %s on the redis %s at %s", self.hub_id, kind, redacted(self.url))

    async def close(self) -> None:
        """Leave Redis: remove this hub's members and heartbeat, stop listening."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(*UNREACHABLE):
            await self._reap(self.hub_id, goodbye=True)
        for pubsub in self._shards.values():
            with contextlib.suppress(*UNREACHABLE):
                await pubsub.aclose()
        with contextlib.suppress(*UNREACHABLE):
            await self.nodes.aclose()

    # --- calls -------------------------------------------------------------------

    async def execute(self, request: Request) -> list[Action]:
        """Run ``request`` against Redis; return the core's actions for the outcome."""
        try:
            if isinstance(request, JoinCall):
                await self._subscribe(request.room)
                result = await self._join(
                    request.room,
                    request.user,
                    request.session,
                    request.conn,
                    request.since,
                    request.history_size,
                )
                return self.core.join_done(request, result)
            if isinstance(request, PostCall | DirectCall):
                key, command = self._post_command(request)
                return self._posted(request, await self._call(key, *command))
            if isinstance(request, LeaveCall):
                await self._room("leave", request.room, request.user, request.conn)
                return []
            if isinstance(request, NickCall):
                reply = await self._room(
                    "nick", request.room, request.old, request.new, request.conn
                )
                return self.core.nick_done(request, None if reply[0] == "ok" else reply[0])
            if isinstance(request, TopicCall):
                frame = protocol.topic_changed_frame(request.topic)
                await self._room("topic", request.topic.room, frame)
                return []
            if isinstance(request, HistoryCall):
                before = "" if request.before is None else request.before
                frames, complete = await self._room("page", request.room, before, request.limit)
                messages = [_message(f) for f in reversed(frames)]
                return self.core.history_done(request, messages, bool(complete))
            await self._subscribe(request.room)
            return self.core.sync_done(request, await self._sync(request))
        except UNREACHABLE as exc:
            self._outage(exc)
            if isinstance(request, LeaveCall):
                self._leaves.append(request)
            return self.core.call_failed(request, STORAGE_UNREACHABLE)

    def must_wait(self, lane: Lane) -> bool:
        """True if ``lane`` must await :meth:`Lane.answered` before its next :meth:`submit`."""
        return lane.out != 0 and (lane.turn != self.flushes or lane.out >= MAX_POSTS_IN_FLIGHT)

    def submit(self, request: PostCall | DirectCall, lane: Lane) -> None:
        """Send ``request`` on ``lane`` (one per connection) without waiting for its answer.

        A burst of one client's messages then costs one round trip, one write
        to Redis and one write of acks back, not one each. The posts a lane
        submits in one loop turn go to Redis in one write, in order, and Redis
        stores them in it; one in a later turn first waits for those the lane
        has out, since one of those may yet be sent again (a cluster's
        redirection, a server's lost scripts) and stored after it: call only
        when :meth:`must_wait` is false, and await
        :meth:`Lane.answered` before any other call for the connection, too.
        The outcome (a resend's ack, a refusal, an outage) is dispatched when
        the answer comes.
        """
        if self.must_wait(lane):
            raise RuntimeError("the lane has posts of an earlier loop turn out; await answered()")
        key, command = self._post_command(request)
        lane.out += 1
        lane.turn = self.flushes
        self._enqueue((key, command, _Answer(self, request, lane), 0, lane))

    @staticmethod
    def new_lane() -> Lane:
        """A lane for one connection's posts (:meth:`submit`)."""
        return Lane()

    def _answer(
        self, request: PostCall | DirectCall, result: Any, error: BaseException | None
    ) -> None:
        """Dispatch the outcome of a submitted post (called as its reply is read)."""
        try:
            if error is None:
                self.dispatch(self._posted(request, result))
            elif isinstance(error, Exception):
                if isinstance(error, UNREACHABLE):
                    self._outage(error)
                else:
                    logger.error("post failed in redis: %r", error)
                self.dispatch(self.core.call_failed(request, STORAGE_UNREACHABLE))
        except Exception:  # one bad outcome must not keep the batch's others from theirs
            logger.exception("dispatching the outcome of a post failed")

    def dispatch(self, actions: Iterable[Action]) -> None:
        """Perform ``actions`` now; run their calls in the background."""
        plain: list[Action] = []
        for action in actions:
            if isinstance(action, Call):
                self._spawn(self._execute_and_dispatch(action.request))
            else:
                plain.append(action)
        if plain:
            self.perform(plain)

    async def _execute_and_dispatch(self, request: Request) -> None:
        self.dispatch(await self.execute(request))

    async def _join(
        self,
        room: str,
        user: str,
        session: str | None,
        conn: str,
        since: int | None,
        limit: int,
    ) -> JoinResult:
        if room not in self._registered:
            # In this hub's registry before any member of it is in the room, so
            # that whoever reaps this hub finds every room to clean.
            await self._call(self._rooms_key, "SADD", self._rooms_key, room)
            self._registered.add(room)
        reply = await self._room(
            "join",
            room,
            user,
            session or "",
            conn,
            self.hub_id,
            "" if since is None else since,
            limit,
        )
        if reply[0] != "ok":
            return JoinResult(refused=reply[0])
        _, pos, seq, members, frames, topic = reply
        history = tuple(_message(f) for f in reversed(frames))
        if since is None or since >= seq:
            truncated = False
        else:
            truncated = not history or history[0].seq != since + 1
        members = parse_members(json.loads(members))
        return JoinResult(None, int(pos), int(seq), members, history, truncated, topic)

    def _post_command(self, call: PostCall | DirectCall) -> tuple[str, tuple[Any, ...]]:
        """The key and command that store (or, for a direct message, hand on) ``call``'s message."""
        message = call.message
        head, tail = _split_frame(message)
        if isinstance(call, DirectCall):
            args: tuple[Any, ...] = (
                message.user, message.id, message.to, head, tail, DIRECT_DEDUP_SECONDS
            )  # fmt: skip
            return self._room_command(
                "direct", message.room, args, extra_key=f"dm:{message.user}\n{message.id}"
            )
        emotion = "" if message.emotion is None else _emotion_json(tail)
        args = (message.user, message.id, head, tail, self.history_keep, call.conn, emotion)
        return self._room_command("post", message.room, args)

    def _posted(self, call: PostCall | DirectCall, reply: Any) -> list[Action]:
        """The core's actions for the script's ``reply`` to ``call``.

        A post that is new is acknowledged by its event; a resend gets its
        first copy again. A direct message may also be refused.
        """
        earlier = _message(reply[1]) if reply[0] == "dup" else None
        if isinstance(call, PostCall):
            return self.core.post_done(call, earlier)
        refused = None if reply[0] in ("ok", "dup") else str(reply[0])
        return self.core.direct_done(call, earlier or refused)

    async def _sync(self, call: SyncCall) -> SyncResult:
        reply = await self._room("sync", call.room, call.since, call.limit)
        pos, seq, members, frames, topic = reply
        messages = tuple(_message(f) for f in reversed(frames))
        members = parse_members(json.loads(members))
        return SyncResult(int(pos), int(seq), members, messages, topic)

    # --- commands ----------------------------------------------------------------

    async def _room(self, script: str, room: str, *args: Any) -> Any:
        """Run the room script ``script`` on ``room`` with ``args``."""
        key, command = self._room_command(script, room, args)
        return await self._call(key, *command)

    def _room_command(
        self, script: str, room: str, args: tuple[Any, ...], extra_key: str = ""
    ) -> tuple[str, tuple[Any, ...]]:
        """The key and ``EVALSHA`` command that run the room script ``script`` on ``room``."""
        return room_command(self._scripts[script], self.prefix, room, args, extra_key)

    async def _hubs(self, script: str, hub: str, *args: Any) -> Any:
        """Run the registry script ``script`` about ``hub`` (its ``ARGV[1]``) with ``args``."""
        known = self._scripts[script]
        keys = [self._hubs_key] + [hub_key(self.prefix, hub, what) for what in known.keys]
        return await self._call(
            keys[0], "EVALSHA", known.sha, len(keys), *keys, self._hubs_key, hub, *args
        )

    async def _call(self, key: str, *command: Any) -> Any:
        """Run ``command`` (about ``key``), pipelined with the other calls of this loop turn.

        N scripts sent as one packed write on the server's one shared
        connection (:class:`~hub.redis_nodes.Multiplexed`) cost the hub a small
        fraction of the CPU of N separate redis-py calls, and one round trip
        instead of N (``bench/redis_pipeline_bench.py``).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue((key, command, future, 0, None))
        return await future

    def _enqueue(self, pending: _Pending) -> None:
        self._queue.append(pending)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.flushes += 1
        queue, self._queue = self._queue, []
        by_server: dict[int, tuple[aioredis.ConnectionPool, list[_Pending]]] = {}
        if not self.nodes.is_cluster:
            by_server[0] = (self.nodes.pool(""), queue)
        else:
            for pending in queue:
                pool = self.nodes.pool(pending[0])
                by_server.setdefault(id(pool), (pool, []))[1].append(pending)
        for pool, calls in by_server.values():
            for batch in _batches(calls):
                self._spawn(self._send_batch(pool, batch))

    async def _send_batch(self, pool: aioredis.ConnectionPool, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results = await self._pipeline(pool, [pending[1] for pending in batch])
            if self.on_round_trip is not None:
                self.on_round_trip(time.perf_counter() - started)
        except BaseException as exc:
            if isinstance(exc, UNREACHABLE):
                self._reread_map_soon()
            for pending in batch:
                future = pending[2]
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._settle(batch, results)

    def _settle(self, calls: list[_Pending], results: list[Any]) -> None:
        """Hand each call its result, or follow the cluster's redirections, in order."""
        redirected: list[tuple[_Pending, Exception]] = []
        for pending, result in zip(calls, results, strict=True):
            future, tries = pending[2], pending[3]
            if future.done():
                continue
            if isinstance(result, REDIRECTED) and tries < MAX_REDIRECTS:
                redirected.append((pending, result))
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if redirected:
            self._spawn(self._redirect(redirected))

    async def _redirect(self, calls: list[tuple[_Pending, Exception]]) -> None:
        """Send calls again where the cluster says their slots now are.

        The calls of one pipeline are redirected together, in their order,
        so that a connection's posts caught by a migration are still stored
        in the order it sent them: Redis runs a pipeline read in one go
        without another client's commands (a ``MIGRATE`` among them) in
        between, so a lane's calls get the same answer.
        """
        again = [
            (key, command, future, tries + 1, lane)
            for (key, command, future, tries, lane), _ in calls
        ]
        errors = [error for _, error in calls]
        if any(isinstance(e, ClusterDownError) for e in errors):
            await asyncio.sleep(CLUSTER_DOWN_PAUSE)
        elif any(isinstance(e, TryAgainError) for e in errors):
            await asyncio.sleep(TRY_AGAIN_PAUSE)
        if any(isinstance(e, MovedError | ClusterDownError) for e in errors):
            try:
                await self.nodes.refresh()
            except UNREACHABLE as exc:
                self._settle(again, [exc] * len(again))
                return
        asked: dict[tuple[str, int], list[_Pending]] = {}
        for pending, error in zip(again, errors, strict=True):
            if isinstance(error, AskError) and not isinstance(error, MovedError):
                asked.setdefault((error.host, error.port), []).append(pending)
            else:
                self._enqueue(pending)
        for (host, port), on_target in asked.items():
            # Mid-migration: these calls go to the target, each announced by ASKING.
            commands = [c for pending in on_target for c in (("ASKING",), pending[1])]
            try:
                results = (await self._pipeline(self.nodes.pool_at(host, port), commands))[1::2]
            except Exception as exc:
                results = [exc] * len(on_target)
            self._settle(on_target, results)

    def _reread_map_soon(self) -> None:
        """After a call failed to reach a cluster node, read the slot map again.

        A dead primary's replica takes over its slots without a ``MOVED`` to
        tell the hub: the calls to that node only fail to connect. Nothing
        else would send a hub whose rooms are elsewhere, and whose beats go
        there, to the new primary.
        """
        now = time.monotonic()
        if (
            not self.nodes.is_cluster
            or self._closing
            or now - self._map_reread_at < MAP_REREAD_PAUSE
        ):
            return
        self._map_reread_at = now
        self._spawn(self._reread_map())

    async def _reread_map(self) -> None:
        with contextlib.suppress(*UNREACHABLE):
            await self.nodes.refresh()

    async def _pipeline(
        self, pool: aioredis.ConnectionPool, commands: list[tuple[Any, ...]]
    ) -> list[Any]:
        """Send ``commands`` in one write; load the scripts once if the server lost them."""
        link = self.nodes.link(pool)
        results = await link.call(commands)
        if any(isinstance(r, NoScriptError) for r in results):
            # A restarted (or newly added) server has an empty script cache.
            await link.call([("SCRIPT", "LOAD", s.source) for s in self._scripts.values()])
            results = await link.call(commands)
        return results

    # --- subscription ------------------------------------------------------------

    def channel(self, room: str) -> str:
        return room_key(self.prefix, room, "events")

    async def _subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s events and wait until Redis confirms it."""
        channel = self.channel(room)
        confirmed = self._subscribed.get(channel)
        first = confirmed is None
        if confirmed is None:
            confirmed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            self._room_of[channel] = room
        try:
            if first:
                await self._subscribe_channels([channel])
            await asyncio.wait_for(asyncio.shield(confirmed), timeout=self.heartbeat * 5)
        except BaseException:
            current = self._subscribed.get(channel)
            if first and (current is None or not current.done()):
                # Never confirmed, so nobody here hears the room: do not
                # subscribe it again with the others (Redis may refuse it).
                self._subscribed.pop(channel, None)
                self._room_of.pop(channel, None)
            raise

    async def _subscribe_channels(self, channels: list[str]) -> None:
        """Subscribe to ``channels``, each on the server that holds it."""
        by_server: dict[int, tuple[aioredis.ConnectionPool, list[str]]] = {}
        for channel in channels:
            pool = self.nodes.pool(channel)
            by_server.setdefault(id(pool), (pool, []))[1].append(channel)
        for server, (pool, on_server) in by_server.items():
            pubsub = await self._shard(pool)
            for channel in on_server:
                self._shard_of[channel] = server
            if self.nodes.sharded:
                await pubsub.ssubscribe(*on_server)
            else:
                await pubsub.subscribe(*on_server)

    async def _shard(self, pool: aioredis.ConnectionPool) -> PubSub:
        """This hub's subscription on ``pool``'s server, opened and heard on first use."""
        async with self._shard_lock:
            pubsub = self._shards.get(id(pool))
            if pubsub is None:
                pubsub = aioredis.Redis(connection_pool=pool).pubsub()
                await pubsub.subscribe(self._control)
                self._shards[id(pool)] = pubsub
                self._listeners[id(pool)] = self._spawn(self._listen(pubsub))
            return pubsub

    async def _listen(self, pubsub: PubSub) -> None:
        """Read one server's pub/sub until it breaks; then resubscribe everything.

        Read off the subscription's connection (:func:`read_replies`) rather
        than through ``PubSub.get_message``: its retry, health check, timer
        and message dict per event cost the hub more CPU than the rest of the
        delivery (measured with cProfile under ``bench/hub_bench.py --hubs``).
        """
        try:
            while not self._closing:
                conn = pubsub.connection
                if conn is None:
                    raise ConnectionError("the subscription has no connection")
                for reply in await read_replies(conn):
                    if isinstance(reply, Exception):
                        # A (s)subscribe refused: a stale slot map's MOVED, an
                        # ACL's NOPERM. Subscribe everything again, map re-read.
                        raise reply
                    if reply[0] not in _EVENTS:
                        await pubsub.handle_message(reply)  # its bookkeeping of (un)subscribes
                    self._on_pubsub(reply)
        except UNREACHABLE as exc:
            self._subscription_lost(exc)

    def _on_pubsub(self, reply: list[Any]) -> None:
        kind, channel = reply[0], reply[1]
        if kind in _EVENTS:
            room = self._room_of.get(channel)
            if room is None:
                return
            try:
                event = decode_event(reply[2])
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("malformed event on %s: %r", channel, exc)
                return
            self.dispatch(self.core.event(room, event))
        elif kind in ("subscribe", "ssubscribe"):
            confirmed = self._subscribed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "sunsubscribe" and channel in self._room_of:
            # Not asked for: the room's slot moved to another node.
            logger.info("%s moved to another redis node", self._room_of[channel])
            self._subscription_lost(None)

    def _subscription_lost(self, exc: BaseException | None) -> None:
        if self._closing:
            return
        if exc is not None:
            self._outage(exc)
        if self._resubscribing:
            self._lost_again = True  # a subscription just opened broke: open them again
            return
        self._resubscribing = True
        self._spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        """Open new subscriptions for every room, then resync them (events were lost)."""
        delay = 0.1
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                self._lost_again = False
                await self._drop_subscriptions()
                channels = list(self._room_of)
                loop = asyncio.get_running_loop()
                self._subscribed = {channel: loop.create_future() for channel in channels}
                try:
                    await self.nodes.refresh()
                    await self._subscribe_channels(channels)
                except UNREACHABLE:
                    delay = min(2 * delay, self.heartbeat)
                    continue
                if self._lost_again:
                    delay = min(2 * delay, self.heartbeat)
                    continue
                logger.info("subscription to %d rooms restored", len(channels))
                self.dispatch(self.core.resync())
                return
        finally:
            self._resubscribing = False

    async def _drop_subscriptions(self) -> None:
        current = asyncio.current_task()
        for task in self._listeners.values():
            if task is not current:
                task.cancel()
        for pubsub in self._shards.values():
            with contextlib.suppress(*UNREACHABLE):
                await pubsub.aclose()
        self._listeners.clear()
        self._shards.clear()
        self._shard_of.clear()

    async def _unsubscribe_idle(self) -> None:
        idle: dict[int, list[str]] = {}
        for room in self.core.idle_rooms():
            channel = self.channel(room)
            self._subscribed.pop(channel, None)
            self._room_of.pop(channel, None)
            server = self._shard_of.pop(channel, None)
            if server is not None:
                idle.setdefault(server, []).append(channel)
        for server, channels in idle.items():
            pubsub = self._shards.get(server)
            if pubsub is None:
                continue
            if self.nodes.sharded:
                await pubsub.sunsubscribe(*channels)
            else:
                await pubsub.unsubscribe(*channels)

    # --- heartbeat ---------------------------------------------------------------

    async def _beat_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._beat()
            except UNREACHABLE as exc:
                self._outage(exc)

    async def _beat(self) -> None:
        alive = await self._hubs("beat", self.hub_id, self.ttl_ms)
        if self._down_since is not None:
            logger.warning("redis is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        if not alive:
            # Our beat expired (a long outage, or Redis lost it): other hubs may
            # have removed our members, or be removing them right now. Register
            # them again, and once more at the next beat, after any such reap.
            self._registered.clear()
            self._reregister_beats = 2
        if self._reregister_beats:
            self._reregister_beats -= 1
            await self._register_members()
        for hub in await self._hubs("dead", self.hub_id, self.ttl_ms):
            await self._reap(hub)
        self.dispatch(self.core.retry_failed_syncs())
        leaves, self._leaves = self._leaves, []
        for call in leaves:
            await self.execute(call)
        await self._unsubscribe_idle()

    async def _reap(self, hub: str, *, goodbye: bool = False) -> None:
        """Remove ``hub``'s members from every room it registered, then the hub itself."""
        rooms_key = hub_key(self.prefix, hub, "rooms")
        rooms = await self._call(rooms_key, "SMEMBERS", rooms_key)
        await asyncio.gather(*(self._room("reap_room", room, hub) for room in rooms))
        await self._hubs("forget", hub, "1" if goodbye else "")

    async def _register_members(self) -> None:
        for room, user, session, conn in self.core.members():
            result = await self._join(room, user, session, conn, None, 0)
            if result.refused:
                why = f"{user} was taken in {room} while the hub was cut off"
                self.dispatch(self.core.evict(room, conn, "name_taken", why))

    # --- helpers -----------------------------------------------------------------

    def _outage(self, exc: BaseException) -> None:
        if self._down_since is None and not self._closing:
            self._down_since = time.monotonic()
            logger.error("redis unreachable (%s: %s); holding connections", type(exc).__name__, exc)
            self.perform(
                self.core.outage("the hub lost its storage; messages wait until it returns")
            )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("redis engine task failed", exc_info=task.exception())


class Lane:
    """One connection's posts out to Redis (:meth:`RedisEngine.submit`)."""

    __slots__ = ("_idle", "out", "turn")

    def __init__(self) -> None:
        self.out = 0  # posts submitted and not yet answered
        self.turn = -1  # the engine's flushes when the last was submitted
        self._idle: asyncio.Future[None] | None = None

    async def answered(self) -> None:
        """Return once every post submitted on this lane has its answer."""
        while self.out:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    def _one_answered(self) -> None:
        self.out -= 1
        if not self.out and self._idle is not None:
            self._idle.set_result(None)
            self._idle = None


class _Answer:
    """Where a submitted post's reply goes: to the engine's outcome at once.

    Stands in for the :class:`asyncio.Future` of other calls (``done``,
    ``set_result``, ``set_exception``), without the loop turn a future's
    callback would take for each message.
    """

    __slots__ = ("_done", "_engine", "_lane", "_request")

    def __init__(self, engine: RedisEngine, request: PostCall | DirectCall, lane: Lane) -> None:
        self._engine, self._request, self._lane = engine, request, lane
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        if not self._done and isinstance(result, list) and result and result[0] == "ok":
            # Stored (or handed on) as new: its event is the sender's ack, and
            # the core has nothing to do (post_done, direct_done).
            self._done = True
            self._lane._one_answered()
        else:
            self._finish(result, None)

    def set_exception(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._lane._one_answered()
        self._engine._answer(self._request, result, error)


def _batches(calls: list[_Pending]) -> Iterable[list[_Pending]]:
    """``calls`` cut into pipelines of about :data:`MAX_PIPELINE`, never inside a lane.

    A lane's calls of one loop turn are adjacent in the queue (one task step
    queued them) and must reach Redis in one write to run in order.
    """
    start = 0
    for end in range(MAX_PIPELINE, len(calls)):
        lane = calls[end][4]
        if end - start >= MAX_PIPELINE and (lane is None or lane is not calls[end - 1][4]):
            yield calls[start:end]
            start = end
    yield calls[start:]


def room_command(
    script: Script, prefix: str, room: str, args: tuple[Any, ...], extra_key: str = ""
) -> tuple[str, tuple[Any, ...]]:
    """The first key and the ``EVALSHA`` command that run ``script`` on ``room`` with ``args``.

    The script gets its keys as ``KEYS`` (all in the room's slot) and the
    room's key prefix as ``ARGV[1]``, before ``args``; ``extra_key`` is one
    more key under that prefix.
    """
    base, keys = _room_keys(prefix, room, script.keys)
    if extra_key:
        keys = (*keys, base + extra_key)
    return keys[0], ("EVALSHA", script.sha, len(keys), *keys, base, *args)


@functools.lru_cache(maxsize=4096)
def _room_keys(prefix: str, room: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``room``'s key prefix and its keys ``names``: the same few for every message."""
    base = room_base(prefix, room)
    return base, tuple(base + name for name in names)


def _split_frame(message: ChatMessage) -> tuple[str, str]:
    """The chat frame of ``message`` around its ``seq``, which Redis fills in."""
    frame = protocol.chat_frame(message)
    marker = f',"seq":{message.seq!r},'
    # Strings in the frame are JSON-escaped, so the first unescaped marker is the field.
    head, _, tail = frame.partition(marker)
    return head + ',"seq":', "," + tail


def _emotion_json(tail: str) -> str:
    """The ``emotion`` object as the chat frame's ``tail`` (:func:`_split_frame`) holds it.

    Sliced rather than encoded again; like ``seq``, the field is found by
    its unescaped marker, and ``"action"`` follows it (:func:`protocol.chat_frame`).
    """
    return tail.partition(',"emotion":')[2].partition(',"action":')[0]


def _message(frame: str) -> ChatMessage:
    return protocol.chat_message_from_json(protocol.decode(frame))
