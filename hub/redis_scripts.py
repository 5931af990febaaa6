"""The hub's keys in Redis and the Lua scripts that alone change them.

Every hub on the same Redis serves the same rooms. What must be one thing for
all of them lives in Redis, changed only by these scripts (atomic, so the
order Redis runs them in is *the* order):

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
                                         expires after the dedup window
``<p>room:{<name>}:events``              (sharded) pub/sub channel: every change,
                                         numbered by pos
``<p>{hubs}``                            every hub that registered once
``<p>{hubs}:beat:<id>``                  a hub's heartbeat, expiring after its ttl
``<p>{hubs}:suspect:<id>``               when a hub's beat was first seen missing
``<p>{hubs}:rooms:<id>``                 the rooms a hub may have members in, to clean
                                         up after it
=======================================  =============================================

Every key sits in a hash tag, so a room lives in one Redis Cluster slot and
the hub registry in another, and each script touches one slot. A script gets
its slot's key prefix as ``ARGV[1]`` (:func:`room_base`, :func:`hubs_base`)
and names in ``KEYS`` the keys it may touch (:attr:`Script.keys`), as Redis
needs to route it and, while a slot migrates, to tell whether to run it
(``ASK``, ``TRYAGAIN``). Only :data:`_DEAD` reads other hubs' beats beyond
its ``KEYS``: the registry is rewritten by every beat, so a reading that a
migration of ``{hubs}`` spoils is corrected a beat later.

Cleaning up after a dead hub spans slots, so the engine runs it as steps:
find the dead (``dead``), read their rooms, run ``reap_room`` in each, then
``forget`` them; every step is idempotent, so two hubs reaping at once do
no harm.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

__all__ = ["Script", "hub_key", "hubs_base", "room_base", "room_key", "scripts"]


def room_base(prefix: str, room: str) -> str:
    """The prefix of all of ``room``'s keys; a room script's ``KEYS[1]``.

    The room sits in a hash tag, ``{...}``, so that all of a room's keys (and
    its channel) hash to one Redis Cluster slot; ``%`` and ``}`` are escaped
    (``%25``, ``%7D``) so that the tag ends where the name does and two rooms
    never share a key.
    """
    tag = room.replace("%", "%25").replace("}", "%7D")
    return f"{prefix}room:{{{tag}}}:"


def room_key(prefix: str, room: str, what: str) -> str:
    """The name of ``room``'s key (or channel) ``what``, as the scripts build it."""
    return room_base(prefix, room) + what


def hubs_base(prefix: str) -> str:
    """The hub registry's set, and the prefix of each hub's keys; a hub script's ``KEYS[1]``."""
    return f"{prefix}{{hubs}}"


def hub_key(prefix: str, hub: str, what: str) -> str:
    """The registry's key ``what`` (``beat``, ``suspect``, ``rooms``) of ``hub``."""
    return f"{hubs_base(prefix)}:{what}:{hub}"


@dataclass(frozen=True)
class Script:
    """A Lua script as sent to Redis: ``EVALSHA sha <n> KEYS... <base> ARGV...``."""

    name: str
    source: str
    #: The keys it may touch besides the one it is run on. For a room script,
    #: after the room's prefix (a direct message's dedup key comes on top); for
    #: a registry script, the kinds of :func:`hub_key` of the hub it is about,
    #: besides the set of hubs.
    keys: tuple[str, ...] = ()

    @functools.cached_property
    def sha(self) -> str:
        # Cached: hashing the source on every call showed in the hub's profile.
        return hashlib.sha1(self.source.encode()).hexdigest()


_ROOM_PRELUDE = r"""
local R = table.remove(ARGV, 1)
local function emit(line) redis.call('@PUBLISH@', R .. 'events', line) end
local function member_list()
  local flat = redis.call('HGETALL', R .. 'members')
  local out = {}
  for i = 1, #flat, 2 do
    local held = cjson.decode(flat[i + 1])
    out[#out + 1] = {user = flat[i], emotion = held.e}
  end
  return out
end
local function publish(kind, conn, user, members)
  local pos = redis.call('INCR', R .. 'pos')
  emit(pos .. ' ' .. kind .. ' ' .. conn .. ' ' .. cjson.encode({user = user, members = members}))
  return pos
end
local function leave(user, conn)
  local raw = redis.call('HGET', R .. 'members', user)
  if not raw then return 0 end
  if cjson.decode(raw).c ~= conn then return 0 end
  redis.call('HDEL', R .. 'members', user)
  publish('l', conn, user, member_list())
  return 1
end
local function entries(list)
  local out = {}
  for i, entry in ipairs(list) do out[i] = entry[2][2] end
  return out
end
"""

# ARGV: user, session ('' = none), conn, hub, since ('' = none), limit
_JOIN = r"""
local user, session, conn, hub = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local raw = redis.call('HGET', R .. 'members', user)
local kind, event_conn, emotion = 'j', conn, nil
if raw then
  local held = cjson.decode(raw)
  if held.c == conn then
    kind = nil  -- re-registering a connection Redis already knows
  elseif session == '' or held.s ~= session then
    return {'name_taken'}
  else
    kind, event_conn, emotion = 'r', held.c, held.e
  end
end
local entry = cjson.encode({s = session, c = conn, h = hub, e = emotion})
redis.call('HSET', R .. 'members', user, entry)
local members = member_list()
local pos
if kind then
  pos = publish(kind, event_conn, user, members)
else
  pos = tonumber(redis.call('GET', R .. 'pos') or '0')
end
local seq = tonumber(redis.call('GET', R .. 'seq') or '0')
local since, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local history = {}
if limit > 0 then
  local from = '-'
  if since ~= nil and since <= seq then from = (since + 1) .. '-0' end
  history = entries(redis.call('XREVRANGE', R .. 'log', '+', from, 'COUNT', limit))
end
local topic = redis.call('GET', R .. 'topic') or ''
return {'ok', pos, seq, cjson.encode(members), history, topic}
"""

# ARGV: user, id, frame head, frame tail, keep, conn, emotion JSON ('' = none)
_POST = r"""
local user = ARGV[1]
local key = user .. '\n' .. ARGV[2]
local earlier = redis.call('ZSCORE', R .. 'ids', key)
if earlier then
  local found = redis.call('XRANGE', R .. 'log', earlier .. '-0', earlier .. '-0')
  if found[1] then return {'dup', found[1][2][2]} end
end
local seq = redis.call('INCR', R .. 'seq')
local frame = ARGV[3] .. seq .. ARGV[4]
local keep = tonumber(ARGV[5])
redis.call('XADD', R .. 'log', 'MAXLEN', '~', keep, seq .. '-0', 'm', frame)
redis.call('ZADD', R .. 'ids', seq, key)
if seq > keep then redis.call('ZREMRANGEBYSCORE', R .. 'ids', '-inf', seq - keep) end
local raw = redis.call('HGET', R .. 'members', user)
if raw then
  local held = cjson.decode(raw)
  if held.c == ARGV[6] then
    if ARGV[7] == '' then held.e = nil else held.e = cjson.decode(ARGV[7]) end
    redis.call('HSET', R .. 'members', user, cjson.encode(held))
  end
end
emit(redis.call('INCR', R .. 'pos') .. ' m ' .. seq .. ' ' .. frame)
return {'ok', seq}
"""

# ARGV: user, conn
_LEAVE = "return leave(ARGV[1], ARGV[2])"

# ARGV: hub. Every member ``hub`` registered leaves, as if it had said so.
_REAP_ROOM = r"""
local removed = 0
local flat = redis.call('HGETALL', R .. 'members')
for i = 1, #flat, 2 do
  local held = cjson.decode(flat[i + 1])
  if held.h == ARGV[1] then removed = removed + leave(flat[i], held.c) end
end
return removed
"""

# ARGV: user, id, to, frame head, frame tail, dedup seconds.
# A direct message: published (so the addressee's hub, whichever it is, hands it
# over), never added to the log; its seq is the room's current one.
_DIRECT = r"""
local user, to = ARGV[1], ARGV[3]
local key = R .. 'dm:' .. user .. '\n' .. ARGV[2]
local earlier = redis.call('GET', key)
if earlier then return {'dup', earlier} end
if redis.call('HEXISTS', R .. 'members', to) == 0 then return {'no_such_member'} end
local seq = tonumber(redis.call('GET', R .. 'seq') or '0')
local frame = ARGV[4] .. seq .. ARGV[5]
redis.call('SET', key, frame, 'EX', tonumber(ARGV[6]))
emit(redis.call('INCR', R .. 'pos') .. ' d ' .. seq .. ' ' .. frame)
return {'ok'}
"""

# ARGV: old name, new name, conn
_NICK = r"""
local old, new, conn = ARGV[1], ARGV[2], ARGV[3]
local raw = redis.call('HGET', R .. 'members', old)
if not raw then return {'not_joined'} end
if cjson.decode(raw).c ~= conn then return {'not_joined'} end
if old ~= new and redis.call('HEXISTS', R .. 'members', new) == 1 then
  return {'name_taken'}
end
redis.call('HDEL', R .. 'members', old)
redis.call('HSET', R .. 'members', new, raw)
local body = cjson.encode({user = new, old = old, members = member_list()})
emit(redis.call('INCR', R .. 'pos') .. ' n ' .. conn .. ' ' .. body)
return {'ok'}
"""

# ARGV: topic frame
_TOPIC = r"""
redis.call('SET', R .. 'topic', ARGV[1])
emit(redis.call('INCR', R .. 'pos') .. ' t 0 ' .. ARGV[1])
return 1
"""

# ARGV: before ('' = from the newest), limit. Returns the newest ``limit``
# frames with seq < before (newest first) and 1 if none older is kept.
_PAGE = r"""
local before, limit = ARGV[1], tonumber(ARGV[2])
local last = '+'
if before ~= '' then
  if tonumber(before) <= 1 then return {{}, 1} end
  last = '(' .. before .. '-0'
end
local log = redis.call('XREVRANGE', R .. 'log', last, '-', 'COUNT', limit)
if #log == 0 then return {{}, 1} end
local oldest = redis.call('XRANGE', R .. 'log', '-', '+', 'COUNT', 1)
local complete = 0
if oldest[1][1] == log[#log][1] then complete = 1 end
return {entries(log), complete}
"""

# ARGV: since, limit. The room's counters, members, topic and newest
# ``limit`` messages after ``since``.
_SYNC = r"""
local pos = tonumber(redis.call('GET', R .. 'pos') or '0')
local seq = tonumber(redis.call('GET', R .. 'seq') or '0')
local from = (tonumber(ARGV[1]) + 1) .. '-0'
local log = redis.call('XREVRANGE', R .. 'log', '+', from, 'COUNT', tonumber(ARGV[2]))
local topic = redis.call('GET', R .. 'topic') or ''
return {pos, seq, cjson.encode(member_list()), entries(log), topic}
"""

_HUBS_PRELUDE = r"""
local H = table.remove(ARGV, 1)
"""

# ARGV: hub, ttl in ms. Returns 1 if the previous beat was still alive.
_BEAT = r"""
local had = redis.call('SET', H .. ':beat:' .. ARGV[1], '1', 'PX', ARGV[2], 'GET')
redis.call('SADD', H, ARGV[1])
redis.call('DEL', H .. ':suspect:' .. ARGV[1])
if had then return 1 end
return 0
"""

# ARGV: the asking hub, grace in ms. The other hubs whose beat has been missing
# for ``grace``: after a Redis restart every live hub beats again within one
# interval, so none of them is taken for dead because the others beat first.
_DEAD = r"""
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local dead = {}
for _, hub in ipairs(redis.call('SMEMBERS', H)) do
  if hub ~= ARGV[1] and redis.call('EXISTS', H .. ':beat:' .. hub) == 0 then
    local suspect = H .. ':suspect:' .. hub
    local since = tonumber(redis.call('GET', suspect))
    if since == nil then
      redis.call('SET', suspect, now)
    elseif now - since >= tonumber(ARGV[2]) then
      dead[#dead + 1] = hub
    end
  end
end
return dead
"""

# ARGV: hub, '1' to forget it even if it beats (its own goodbye). Returns 0
# if the hub beat again meanwhile: then it keeps its registry.
_FORGET = r"""
local hub = ARGV[1]
if ARGV[2] == '1' then
  redis.call('DEL', H .. ':beat:' .. hub)
elseif redis.call('EXISTS', H .. ':beat:' .. hub) == 1 then
  return 0
end
redis.call('DEL', H .. ':rooms:' .. hub, H .. ':suspect:' .. hub)
redis.call('SREM', H, hub)
return 1
"""

_ROOM_SCRIPTS = {  # name: (source, the keys it touches)
    "join": (_JOIN, ("members", "pos", "seq", "log", "topic")),
    "post": (_POST, ("ids", "log", "seq", "members", "pos")),
    "leave": (_LEAVE, ("members", "pos")),
    "reap_room": (_REAP_ROOM, ("members", "pos")),
    "direct": (_DIRECT, ("members", "seq", "pos")),
    "nick": (_NICK, ("members", "pos")),
    "topic": (_TOPIC, ("topic", "pos")),
    "page": (_PAGE, ("log",)),
    "sync": (_SYNC, ("pos", "seq", "log", "topic", "members")),
}
_HUB_SCRIPTS = {  # name: (source, the hub's keys it touches)
    "beat": (_BEAT, ("beat", "suspect")),
    "dead": (_DEAD, ()),  # other hubs' beats too: see the module's docstring
    "forget": (_FORGET, ("beat", "suspect", "rooms")),
}


def scripts(sharded: bool) -> dict[str, Script]:
    """Every script by name; ``sharded`` publishes with ``SPUBLISH`` (Redis ≥ 7)."""
    prelude = _ROOM_PRELUDE.replace("@PUBLISH@", "SPUBLISH" if sharded else "PUBLISH")
    found = {
        name: Script(name, prelude + body, keys) for name, (body, keys) in _ROOM_SCRIPTS.items()
    }
    found |= {
        name: Script(name, _HUBS_PRELUDE + body, keys)
        for name, (body, keys) in _HUB_SCRIPTS.items()
    }
    return found
