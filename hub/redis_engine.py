"""Shared rooms on Redis (``fer-hub --redis URL``): the I/O half of :mod:`hub.cluster`.

Every hub on the same Redis serves the same rooms. What must be one thing for
all of them lives in Redis, changed only by Lua scripts (atomic, so the order
Redis runs them in is *the* order):

=======================================  =============================================
``<p>room:{<name>}:seq``                 the room's message counter (``INCR``)
``<p>room:{<name>}:pos``                 the room's event counter: messages, joins, leaves
``<p>room:{<name>}:log``                 a stream of chat frames, entry id ``<seq>-0``,
                                         capped at ``--history-keep`` (``MAXLEN ~``)
``<p>room:{<name>}:ids``                 sorted set ``user\\nid`` → seq: resend dedup,
                                         trimmed with the log
``<p>room:{<name>}:members``             hash user → {session, conn, hub, emotion}
``<p>room:{<name>}:topic``               the topic frame as last set
``<p>room:{<name>}:dm:<user>\\n<id>``     a direct message's frame, for resend dedup;
                                         expires after ``DIRECT_DEDUP_SECONDS``
``<p>room:{<name>}:events``              pub/sub channel: every change, numbered by pos
``<p>hub:<id>``                          a hub's heartbeat, expiring after ``ttl``
``<p>hub:<id>:members``                  what that hub registered, to clean up after it
``<p>hubs``                              every hub that registered once
=======================================  =============================================

A message is acknowledged (its event delivered to the sender) only after
the script that stored it has run; run Redis with ``appendonly yes`` so that
"stored" survives a Redis restart. Each hub subscribes to the rooms it has
members in, delivers events in ``pos`` order and, when a ``pos`` is missing
(the subscription dropped), re-reads the room (:class:`~hub.cluster.SyncCall`).
Hubs beat every ``heartbeat`` seconds; any hub removes a hub whose beat
expired from presence, with the ``leave`` events its members' rooms expect.

A room's keys carry the room as a hash tag (``{<name>}``, with ``%`` and ``}``
escaped: :func:`room_key`), so one room lives in one Redis Cluster slot. The
scripts still touch the hub keys (``<p>hub:*``, ``<p>hubs``) beside a room's,
which are other slots, and name their keys at run time: this needs one Redis
primary (with replicas or Sentinel for failover); see ``docs/scaling.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

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
from .rooms import Action

__all__ = ["HEARTBEAT", "RedisEngine", "new_hub_id", "room_key"]

logger = logging.getLogger("hub.redis")

#: Seconds between heartbeats. A beat lives ``HEARTBEAT_TTL_BEATS`` intervals; a hub
#: whose beat has been gone for as long again is removed from presence.
HEARTBEAT: float = 1.0
HEARTBEAT_TTL_BEATS: int = 3
#: Connections to Redis per hub, the pub/sub one included; calls beyond wait.
REDIS_CONNECTIONS: int = 32
#: Seconds a call may wait for a free connection before it counts as a failure.
POOL_WAIT: float = 30.0
#: Most scripts sent in one pipeline.
MAX_PIPELINE: int = 64
#: Seconds Redis remembers a direct message's id, to acknowledge a resend again.
DIRECT_DEDUP_SECONDS: int = 3600
#: Errors that mean "Redis is unreachable or failed", not "the script refused".
UNREACHABLE = (RedisError, OSError, asyncio.TimeoutError)

_PRELUDE = r"""
local P = ARGV[1]
local function tag(room) return (room:gsub('%%', '%%25'):gsub('}', '%%7D')) end
local function rk(room, what) return P .. 'room:{' .. tag(room) .. '}:' .. what end
local function hub_members(hub) return P .. 'hub:' .. hub .. ':members' end
local function member_list(room)
  local flat = redis.call('HGETALL', rk(room, 'members'))
  local out = {}
  for i = 1, #flat, 2 do
    local held = cjson.decode(flat[i + 1])
    out[#out + 1] = {user = flat[i], emotion = held.e}
  end
  return out
end
local function publish(room, kind, conn, user, members)
  local pos = redis.call('INCR', rk(room, 'pos'))
  local body = cjson.encode({user = user, members = members})
  redis.call('PUBLISH', rk(room, 'events'), pos .. ' ' .. kind .. ' ' .. conn .. ' ' .. body)
  return pos
end
local function leave(room, user, conn)
  local raw = redis.call('HGET', rk(room, 'members'), user)
  if not raw then return 0 end
  local held = cjson.decode(raw)
  if held.c ~= conn then return 0 end
  redis.call('HDEL', rk(room, 'members'), user)
  redis.call('SREM', hub_members(held.h), room .. '\n' .. user .. '\n' .. conn)
  publish(room, 'l', conn, user, member_list(room))
  return 1
end
local function entries(list)
  local out = {}
  for i, entry in ipairs(list) do out[i] = entry[2][2] end
  return out
end
"""

# ARGV: prefix, room, user, session ('' = none), conn, hub, since ('' = none), limit
_JOIN = (
    _PRELUDE
    + r"""
local room, user, session, conn, hub = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local raw = redis.call('HGET', rk(room, 'members'), user)
local kind, event_conn, emotion = 'j', conn, nil
if raw then
  local held = cjson.decode(raw)
  if held.c == conn then
    kind = nil  -- re-registering a connection Redis already knows
  elseif session == '' or held.s ~= session then
    return {'name_taken'}
  else
    kind, event_conn, emotion = 'r', held.c, held.e
    redis.call('SREM', hub_members(held.h), room .. '\n' .. user .. '\n' .. held.c)
  end
end
redis.call('HSET', rk(room, 'members'), user,
           cjson.encode({s = session, c = conn, h = hub, e = emotion}))
redis.call('SADD', hub_members(hub), room .. '\n' .. user .. '\n' .. conn)
local members = member_list(room)
local pos
if kind then
  pos = publish(room, kind, event_conn, user, members)
else
  pos = tonumber(redis.call('GET', rk(room, 'pos')) or '0')
end
local seq = tonumber(redis.call('GET', rk(room, 'seq')) or '0')
local since, limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local history = {}
if limit > 0 then
  local from = '-'
  if since ~= nil and since <= seq then from = (since + 1) .. '-0' end
  history = entries(redis.call('XREVRANGE', rk(room, 'log'), '+', from, 'COUNT', limit))
end
local topic = redis.call('GET', rk(room, 'topic')) or ''
return {'ok', pos, seq, cjson.encode(members), history, topic}
"""
)

# ARGV: prefix, room, user, id, frame head, frame tail, keep, conn, emotion JSON ('' = none)
_POST = (
    _PRELUDE
    + r"""
local room, user = ARGV[2], ARGV[3]
local key = user .. '\n' .. ARGV[4]
local earlier = redis.call('ZSCORE', rk(room, 'ids'), key)
if earlier then
  local found = redis.call('XRANGE', rk(room, 'log'), earlier .. '-0', earlier .. '-0')
  if found[1] then return {'dup', found[1][2][2]} end
end
local seq = redis.call('INCR', rk(room, 'seq'))
local frame = ARGV[5] .. seq .. ARGV[6]
local keep = tonumber(ARGV[7])
redis.call('XADD', rk(room, 'log'), 'MAXLEN', '~', keep, seq .. '-0', 'm', frame)
redis.call('ZADD', rk(room, 'ids'), seq, key)
if seq > keep then redis.call('ZREMRANGEBYSCORE', rk(room, 'ids'), '-inf', seq - keep) end
local raw = redis.call('HGET', rk(room, 'members'), user)
if raw then
  local held = cjson.decode(raw)
  if held.c == ARGV[8] then
    if ARGV[9] == '' then held.e = nil else held.e = cjson.decode(ARGV[9]) end
    redis.call('HSET', rk(room, 'members'), user, cjson.encode(held))
  end
end
local pos = redis.call('INCR', rk(room, 'pos'))
redis.call('PUBLISH', rk(room, 'events'), pos .. ' m ' .. seq .. ' ' .. frame)
return {'ok', seq}
"""
)

# ARGV: prefix, room, user, conn
_LEAVE = _PRELUDE + "\nreturn leave(ARGV[2], ARGV[3], ARGV[4])\n"

# ARGV: prefix, room, user, id, to, frame head, frame tail, dedup seconds.
# A direct message: published (so the addressee's hub, whichever it is, hands it
# over), never added to the log; its seq is the room's current one.
_DIRECT = (
    _PRELUDE
    + r"""
local room, user, to = ARGV[2], ARGV[3], ARGV[5]
local key = rk(room, 'dm:' .. user .. '\n' .. ARGV[4])
local earlier = redis.call('GET', key)
if earlier then return {'dup', earlier} end
if redis.call('HEXISTS', rk(room, 'members'), to) == 0 then return {'no_such_member'} end
local seq = tonumber(redis.call('GET', rk(room, 'seq')) or '0')
local frame = ARGV[6] .. seq .. ARGV[7]
redis.call('SET', key, frame, 'EX', tonumber(ARGV[8]))
local pos = redis.call('INCR', rk(room, 'pos'))
redis.call('PUBLISH', rk(room, 'events'), pos .. ' d ' .. seq .. ' ' .. frame)
return {'ok'}
"""
)

# ARGV: prefix, room, old name, new name, conn
_NICK = (
    _PRELUDE
    + r"""
local room, old, new, conn = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local raw = redis.call('HGET', rk(room, 'members'), old)
if not raw then return {'not_joined'} end
local held = cjson.decode(raw)
if held.c ~= conn then return {'not_joined'} end
if old ~= new and redis.call('HEXISTS', rk(room, 'members'), new) == 1 then
  return {'name_taken'}
end
redis.call('HDEL', rk(room, 'members'), old)
redis.call('HSET', rk(room, 'members'), new, raw)
redis.call('SREM', hub_members(held.h), room .. '\n' .. old .. '\n' .. conn)
redis.call('SADD', hub_members(held.h), room .. '\n' .. new .. '\n' .. conn)
local pos = redis.call('INCR', rk(room, 'pos'))
local body = cjson.encode({user = new, old = old, members = member_list(room)})
redis.call('PUBLISH', rk(room, 'events'), pos .. ' n ' .. conn .. ' ' .. body)
return {'ok'}
"""
)

# ARGV: prefix, room, topic frame
_TOPIC = (
    _PRELUDE
    + r"""
local room, frame = ARGV[2], ARGV[3]
redis.call('SET', rk(room, 'topic'), frame)
local pos = redis.call('INCR', rk(room, 'pos'))
redis.call('PUBLISH', rk(room, 'events'), pos .. ' t 0 ' .. frame)
return 1
"""
)

# ARGV: prefix, room, before ('' = from the newest), limit. Returns the newest
# ``limit`` frames with seq < before (newest first) and 1 if none older is kept.
_PAGE = (
    _PRELUDE
    + r"""
local room, before, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local last = '+'
if before ~= '' then
  if tonumber(before) <= 1 then return {{}, 1} end
  last = '(' .. before .. '-0'
end
local log = redis.call('XREVRANGE', rk(room, 'log'), last, '-', 'COUNT', limit)
if #log == 0 then return {{}, 1} end
local oldest = redis.call('XRANGE', rk(room, 'log'), '-', '+', 'COUNT', 1)
local complete = 0
if oldest[1][1] == log[#log][1] then complete = 1 end
return {entries(log), complete}
"""
)

# ARGV: prefix, room, since, limit. Newest ``limit`` messages after ``since``.
_SYNC = (
    _PRELUDE
    + r"""
local room = ARGV[2]
local pos = tonumber(redis.call('GET', rk(room, 'pos')) or '0')
local seq = tonumber(redis.call('GET', rk(room, 'seq')) or '0')
local from = (tonumber(ARGV[3]) + 1) .. '-0'
local log = redis.call('XREVRANGE', rk(room, 'log'), '+', from, 'COUNT', tonumber(ARGV[4]))
local topic = redis.call('GET', rk(room, 'topic')) or ''
return {pos, seq, cjson.encode(member_list(room)), entries(log), topic}
"""
)

# ARGV: prefix, hub, ttl in ms. Returns 1 if the previous beat was still alive.
_BEAT = r"""
local had = redis.call('SET', ARGV[1] .. 'hub:' .. ARGV[2], '1', 'PX', ARGV[3], 'GET')
redis.call('SADD', ARGV[1] .. 'hubs', ARGV[2])
redis.call('DEL', ARGV[1] .. 'hub:' .. ARGV[2] .. ':suspect')
if had then return 1 end
return 0
"""

# ARGV: prefix, hub to remove now ('' = every hub whose beat expired), grace in ms.
# A hub is removed only when its beat has been missing for ``grace``: after a
# Redis restart every live hub beats again within one interval, so none of
# them is taken for dead because the others beat first.
_REAP = (
    _PRELUDE
    + r"""
local removed = 0
local hubs = redis.call('SMEMBERS', P .. 'hubs')
if ARGV[2] ~= '' then
  redis.call('DEL', P .. 'hub:' .. ARGV[2])
  hubs = {ARGV[2]}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for _, hub in ipairs(hubs) do
  if redis.call('EXISTS', P .. 'hub:' .. hub) == 0 then
    local suspect = P .. 'hub:' .. hub .. ':suspect'
    local since = tonumber(redis.call('GET', suspect))
    if ARGV[2] == '' and since == nil then
      redis.call('SET', suspect, now)
    elseif ARGV[2] ~= '' or now - since >= tonumber(ARGV[3]) then
      for _, entry in ipairs(redis.call('SMEMBERS', hub_members(hub))) do
        local room, user, conn = string.match(entry, '^(.-)\n(.-)\n(.*)$')
        removed = removed + leave(room, user, conn)
      end
      redis.call('DEL', hub_members(hub), suspect)
      redis.call('SREM', P .. 'hubs', hub)
    end
  end
end
return removed
"""
)


def room_key(prefix: str, room: str, what: str) -> str:
    """The name of ``room``'s key ``what``, as the scripts' ``rk`` builds it.

    The room sits in a hash tag, ``{...}``, so that all of a room's keys (and
    its channel) hash to one Redis Cluster slot; ``%`` and ``}`` are escaped
    (``%25``, ``%7D``) so that the tag ends where the name does and two rooms
    never share a key.
    """
    tag = room.replace("%", "%25").replace("}", "%7D")
    return f"{prefix}room:{{{tag}}}:{what}"


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
        # A bounded pool that waits for a free connection (the default pool
        # raises when full): waiting under a burst is load, not an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS,
            timeout=POOL_WAIT,
            decode_responses=True,
            socket_timeout=max(5.0, heartbeat * 2),
            socket_connect_timeout=max(1.0, heartbeat),
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self._scripts = {
            name: self.redis.register_script(source)
            for name, source in (
                ("join", _JOIN),
                ("post", _POST),
                ("leave", _LEAVE),
                ("sync", _SYNC),
                ("direct", _DIRECT),
                ("nick", _NICK),
                ("topic", _TOPIC),
                ("page", _PAGE),
                ("beat", _BEAT),
                ("reap", _REAP),
            )
        }
        self.pubsub = self.redis.pubsub()
        self._control = f"{prefix}hub:{self.hub_id}:control"  # keeps the subscription alive
        self._subscribed: dict[str, asyncio.Future[None]] = {}  # channel -> confirmed
        self._room_of: dict[str, str] = {}  # channel -> room
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leaves: list[LeaveCall] = []  # to retry when Redis is back
        self._down_since: float | None = None
        self._closing = False
        self._queue: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
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
            await self._run("beat", self.hub_id, self.ttl_ms)
            await self.pubsub.subscribe(self._control)
        except UNREACHABLE as exc:
            raise RuntimeError(f"cannot reach redis at {_redacted(self.url)}: {exc}") from None
        self._spawn(self._listen())
        self._spawn(self._beat_forever())
        logger.info("hub %s on %s", self.hub_id, _redacted(self.url))

    async def close(self) -> None:
        """Leave Redis: remove this hub's members and heartbeat, stop listening."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(*UNREACHABLE):
            await self._run("reap", self.hub_id, 0)
        with contextlib.suppress(*UNREACHABLE):
            await self.pubsub.aclose()
        with contextlib.suppress(*UNREACHABLE):
            await self.redis.aclose()

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
            if isinstance(request, PostCall):
                return self.core.post_done(request, await self._post(request))
            if isinstance(request, LeaveCall):
                await self._run("leave", request.room, request.user, request.conn)
                return []
            if isinstance(request, DirectCall):
                return self.core.direct_done(request, await self._direct(request))
            if isinstance(request, NickCall):
                reply = await self._run(
                    "nick", request.room, request.old, request.new, request.conn
                )
                return self.core.nick_done(request, None if reply[0] == "ok" else reply[0])
            if isinstance(request, TopicCall):
                frame = protocol.topic_changed_frame(request.topic)
                await self._run("topic", request.topic.room, frame)
                return []
            if isinstance(request, HistoryCall):
                before = "" if request.before is None else request.before
                frames, complete = await self._run("page", request.room, before, request.limit)
                messages = [_message(f) for f in reversed(frames)]
                return self.core.history_done(request, messages, bool(complete))
            await self._subscribe(request.room)
            return self.core.sync_done(request, await self._sync(request))
        except UNREACHABLE as exc:
            self._outage(exc)
            if isinstance(request, LeaveCall):
                self._leaves.append(request)
            return self.core.call_failed(request, "the hub cannot reach its storage; retry soon")

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
        reply = await self._run(
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

    async def _post(self, call: PostCall) -> ChatMessage | None:
        message = call.message
        head, tail = _split_frame(message)
        emotion = "" if message.emotion is None else json.dumps(message.emotion.to_json())
        reply = await self._run(
            "post",
            message.room,
            message.user,
            message.id,
            head,
            tail,
            self.history_keep,
            call.conn,
            emotion,
        )
        return _message(reply[1]) if reply[0] == "dup" else None

    async def _direct(self, call: DirectCall) -> str | ChatMessage | None:
        """Publish a direct message; return a resend's first copy or the refusal code."""
        message = call.message
        head, tail = _split_frame(message)
        reply = await self._run(
            "direct",
            message.room,
            message.user,
            message.id,
            message.to,
            head,
            tail,
            DIRECT_DEDUP_SECONDS,
        )
        if reply[0] == "dup":
            return _message(reply[1])
        return None if reply[0] == "ok" else str(reply[0])

    async def _sync(self, call: SyncCall) -> SyncResult:
        reply = await self._run("sync", call.room, call.since, call.limit)
        pos, seq, members, frames, topic = reply
        messages = tuple(_message(f) for f in reversed(frames))
        members = parse_members(json.loads(members))
        return SyncResult(int(pos), int(seq), members, messages, topic)

    async def _run(self, script: str, *args: Any) -> Any:
        """Run ``script`` with ``args``, pipelined with the other calls of this loop turn.

        N scripts sent as one packed write (:func:`send_packed`) cost the hub
        a small fraction of the CPU of N separate redis-py calls, and one round
        trip instead of N (``bench/redis_pipeline_bench.py``).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), MAX_PIPELINE):
            self._spawn(self._send_batch(queue[start : start + MAX_PIPELINE]))

    async def _send_batch(
        self, batch: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]]
    ) -> None:
        started = time.perf_counter()
        try:
            results = await self._pipeline([(script, args) for script, args, _ in batch])
            if self.on_round_trip is not None:
                self.on_round_trip(time.perf_counter() - started)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """EVALSHA each call in one pipeline; load the scripts once if Redis lost them."""
        results = await self._evalsha(calls)
        if any(isinstance(r, NoScriptError) for r in results):
            # A restarted Redis has an empty script cache.
            for known in self._scripts.values():
                await self.redis.script_load(known.script)
            results = await self._evalsha(calls)
        return results

    async def _evalsha(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        commands = [
            ("EVALSHA", self._scripts[script].sha, 0, self.prefix, *args) for script, args in calls
        ]
        return await send_packed(self.redis.connection_pool, commands)

    # --- subscription ------------------------------------------------------------

    def channel(self, room: str) -> str:
        return room_key(self.prefix, room, "events")

    async def _subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s events and wait until Redis confirms it."""
        channel = self.channel(room)
        confirmed = self._subscribed.get(channel)
        if confirmed is None:
            confirmed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            self._room_of[channel] = room
            try:
                await self.pubsub.subscribe(channel)
            except BaseException:
                del self._subscribed[channel]
                raise
        await asyncio.wait_for(asyncio.shield(confirmed), timeout=self.heartbeat * 5)

    async def _listen(self) -> None:
        """Read pub/sub forever; on a broken subscription, reconnect and resync."""
        while not self._closing:
            try:
                reply = await self._read_pubsub()
                while reply is not None:
                    self._on_pubsub(reply)
                    reply = await self._buffered_pubsub()
            except UNREACHABLE as exc:
                self._outage(exc)
                await self._resubscribe()

    async def _read_pubsub(self) -> list[Any] | None:
        """The next raw reply on the subscription, or None after ``heartbeat`` s of quiet.

        Read off the subscription's connection rather than through
        ``PubSub.get_message``: its retry, health check and message dict cost
        the hub more CPU per event than the rest of the delivery (measured
        with cProfile under ``bench/hub_bench.py --hubs``).
        """
        conn = self.pubsub.connection
        if conn is None:
            raise ConnectionError("the subscription has no connection")
        reply = await conn.read_response(timeout=self.heartbeat, push_request=True)
        if reply is not None and reply[0] not in ("message", "smessage"):
            await self.pubsub.handle_message(reply)  # its bookkeeping of (un)subscribes
        return reply

    async def _buffered_pubsub(self) -> list[Any] | None:
        """The next reply if it is already buffered (no timer per read), else None."""
        conn = self.pubsub.connection
        if conn is None or not await conn.can_read():
            return None
        reply = await conn.read_response(timeout=math.inf, push_request=True)
        if reply[0] not in ("message", "smessage"):
            await self.pubsub.handle_message(reply)
        return reply

    def _on_pubsub(self, reply: list[Any]) -> None:
        kind, channel = reply[0], reply[1]
        if kind == "subscribe":
            confirmed = self._subscribed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "message":
            room = self._room_of.get(channel)
            if room is None:
                return
            try:
                event = decode_event(reply[2])
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("malformed event on %s: %r", channel, exc)
                return
            self.dispatch(self.core.event(room, event))

    async def _resubscribe(self) -> None:
        """Open a new subscription for every room, then resync them (events were lost)."""
        delay = 0.1
        while not self._closing:
            await asyncio.sleep(delay)
            with contextlib.suppress(*UNREACHABLE):
                await self.pubsub.aclose()
            self.pubsub = self.redis.pubsub()
            channels = list(self._room_of)
            loop = asyncio.get_running_loop()
            self._subscribed = {channel: loop.create_future() for channel in channels}
            try:
                await self.pubsub.subscribe(self._control, *channels)
            except UNREACHABLE:
                delay = min(2 * delay, self.heartbeat)
                continue
            logger.info("subscription to %d rooms restored", len(channels))
            self.dispatch(self.core.resync())
            return

    def _unsubscribe_idle(self) -> list[str]:
        idle = [self.channel(room) for room in self.core.idle_rooms()]
        for channel in idle:
            self._subscribed.pop(channel, None)
            self._room_of.pop(channel, None)
        return idle

    # --- heartbeat ---------------------------------------------------------------

    async def _beat_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._beat()
            except UNREACHABLE as exc:
                self._outage(exc)

    async def _beat(self) -> None:
        alive = await self._run("beat", self.hub_id, self.ttl_ms)
        if self._down_since is not None:
            logger.warning("redis is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        if not alive:
            # Our beat expired (a long outage, or Redis lost it): other hubs may
            # have removed our members. Register them again.
            await self._register_members()
        await self._run("reap", "", self.ttl_ms)
        self.dispatch(self.core.retry_failed_syncs())
        leaves, self._leaves = self._leaves, []
        for call in leaves:
            await self.execute(call)
        idle = self._unsubscribe_idle()
        if idle:
            await self.pubsub.unsubscribe(*idle)

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


async def send_packed(
    pool: aioredis.ConnectionPool, commands: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Send ``commands`` as one write on one pooled connection; their replies in order.

    Packed by hiredis (C) into one buffer and read back reply by reply:
    redis-py's ``Pipeline`` builds a command object per call and packs it in
    Python, which measured as about half the hub's CPU per message
    (``bench/redis_pipeline_bench.py`` compares the two). An error reply
    becomes that command's result, as ``raise_on_error=False`` would; a
    broken connection fails the whole batch.
    """
    packed = b"".join(hiredis.pack_command(command) for command in commands)
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(packed, check_health=False)
        results: list[Any] = []
        # The first reply waits under the socket timeout; the rest follow it
        # in the same write, so they skip the per-read timeout's timer.
        timeout = None
        for _ in commands:
            try:
                results.append(await conn.read_response(timeout=timeout))
            except ResponseError as exc:
                results.append(exc)
            timeout = math.inf
    finally:
        await pool.release(conn)
    return results


def _split_frame(message: ChatMessage) -> tuple[str, str]:
    """The chat frame of ``message`` around its ``seq``, which Redis fills in."""
    frame = protocol.chat_frame(message)
    marker = f',"seq":{message.seq!r},'
    # Strings in the frame are JSON-escaped, so the first unescaped marker is the field.
    head, _, tail = frame.partition(marker)
    return head + ',"seq":', "," + tail


def _message(frame: str) -> ChatMessage:
    return protocol.chat_message_from_json(protocol.decode(frame))


def _redacted(url: str) -> str:
    """``url`` without a password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
