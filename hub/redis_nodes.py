"""Which Redis server each key's commands go to: one server, or a Redis Cluster.

``--redis`` takes one URL (``redis://HOST:6379/0``, ``rediss://`` for TLS) or
a seed list of cluster nodes in one URL (``redis://HOST:7000,HOST:7001``).
A single URL whose server runs with ``cluster-enabled yes`` is a cluster too:
:meth:`RedisNodes.connect` asks. On a cluster, redis-py's ``RedisCluster``
keeps the slot map; commands still go out as packed writes on a pool per
node, since per-command objects cost the hub more CPU than the rest of a
delivery: :class:`Multiplexed`, one connection per server that every call
shares.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis._parsers.hiredis as redis_hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

__all__ = [
    "POOL_WAIT",
    "Multiplexed",
    "RedisNodes",
    "read_replies",
    "redacted",
    "split_seeds",
]

#: Seconds a call may wait for a free connection before it counts as a failure.
POOL_WAIT: float = 30.0
#: Bytes asked of the socket per read (:func:`read_replies`, :class:`Multiplexed`).
READ_SIZE: int = 65536
#: What redis-py's ``hiredis.Reader`` returns for "no complete reply yet"
#: (``False``, hiredis' default, where redis-py sets none).
_NOT_ENOUGH_DATA: Any = getattr(redis_hiredis, "NOT_ENOUGH_DATA", False)


def split_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``url`` with only its first host, and the other hosts of a seed list.

    >>> split_seeds("redis://:pw@a:7000,b:7001/0")
    ('redis://:pw@a:7000/0', [('b', 7001)])
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a redis URL: {redacted(url)}")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    credentials, at, hosts = netloc.rpartition("@")
    first, *others = hosts.split(",")
    seeds = []
    for host in others:
        name, colon, port = host.rpartition(":")
        if not colon or not name or not port.isdigit():
            raise ValueError(f"a seed must be HOST:PORT, got {host!r} in {redacted(url)}")
        seeds.append((name.strip("[]"), int(port)))
    return f"{scheme}://{credentials}{at}{first}{tail}", seeds


def redacted(url: str) -> str:
    """``url`` without a password, for logs and errors."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class RedisNodes:
    """Connection pools to the Redis server, or cluster primaries, behind ``url``.

    Call :meth:`connect` first. :meth:`pool` names where a key's commands
    go; after a ``MOVED`` or ``CLUSTERDOWN`` reply, :meth:`refresh` re-reads
    the slot map.
    """

    def __init__(
        self, url: str, *, connections: int, socket_timeout: float, connect_timeout: float
    ) -> None:
        self._options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        self._connections = connections
        self._first, self._seeds = split_seeds(url)
        self.cluster: aioredis.RedisCluster | None = None
        #: Whether the servers have sharded pub/sub (``SPUBLISH``, Redis ≥ 7).
        self.sharded = False
        self._single = self._new_pool(aioredis.BlockingConnectionPool.from_url, self._first)
        self._pools: dict[str, aioredis.ConnectionPool] = {}  # node name -> pool
        self._links: dict[int, Multiplexed] = {}  # id(pool) -> its shared connection
        self._refreshing: asyncio.Task[None] | None = None

    def _new_pool(self, make: Any, *args: Any, **kwargs: Any) -> aioredis.ConnectionPool:
        # A bounded pool that waits for a free connection (the default pool
        # raises when full): waiting under a burst is load, not an outage.
        options = self._options | kwargs
        options |= {"max_connections": self._connections, "timeout": POOL_WAIT}
        return make(*args, retry=Retry(NoBackoff(), 1), **options)

    async def connect(self) -> None:
        """Find out whether this is a cluster, and which Redis it runs; raise if unreachable."""
        if not self._seeds:
            info = await aioredis.Redis(connection_pool=self._single).info()
            self.sharded = _major(info) >= 7
            if not info.get("cluster_enabled"):
                return
        await self._single.aclose()
        self.cluster = aioredis.RedisCluster.from_url(
            self._first,
            startup_nodes=[ClusterNode(host, port) for host, port in self._seeds],
            **self._options,
        )
        await self.cluster.initialize()
        primary = self._pool_of(self.cluster.get_primaries()[0])
        self.sharded = _major(await aioredis.Redis(connection_pool=primary).info()) >= 7

    @property
    def is_cluster(self) -> bool:
        return self.cluster is not None

    def pool(self, key: str) -> aioredis.ConnectionPool:
        """The pool of the server that holds ``key``, as far as this hub knows."""
        if self.cluster is None:
            return self._single
        slot = self.cluster.keyslot(key)
        return self._pool_of(self.cluster.nodes_manager.get_node_from_slot(slot))

    def link(self, pool: aioredis.ConnectionPool) -> Multiplexed:
        """The connection every call to ``pool``'s server shares (:class:`Multiplexed`)."""
        link = self._links.get(id(pool))
        if link is None:
            link = self._links[id(pool)] = Multiplexed(pool, self._options["socket_timeout"])
        return link

    def pool_at(self, host: str, port: int) -> aioredis.ConnectionPool:
        """The pool of the node at ``host:port`` (an ``ASK`` redirection's target)."""
        if self.cluster is None:
            return self._single
        node = self.cluster.get_node(host, port)
        if node is None:
            node = ClusterNode(host, port, **self.cluster.nodes_manager.connection_kwargs)
        return self._pool_of(node)

    def _pool_of(self, node: ClusterNode) -> aioredis.ConnectionPool:
        pool = self._pools.get(node.name)
        if pool is None:
            kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in self._options}
            pool = self._pools[node.name] = self._new_pool(
                aioredis.BlockingConnectionPool, connection_class=node.connection_class, **kwargs
            )
        return pool

    async def refresh(self) -> None:
        """Re-read the cluster's slot map (once, however many calls ask at a time)."""
        if self.cluster is None:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.cluster.nodes_manager.initialize())
        await asyncio.shield(self._refreshing)

    async def aclose(self) -> None:
        for link in self._links.values():
            await link.aclose()
        pools = [self._single, *self._pools.values()]
        for pool in pools:
            await pool.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()


def _major(info: dict[str, Any]) -> int:
    return int(str(info.get("redis_version", "0")).split(".")[0])


class Multiplexed:
    """One connection to one Redis server that carries the hub's calls to it, pipelined.

    :meth:`call` packs a batch of commands (hiredis, in C) and writes it at
    once, without waiting for the batches before it; one reader task hands
    each batch its replies as they complete, in the order the batches were
    written, which is the order Redis runs them in. Against a pooled
    connection per batch this saves taking and returning
    the connection, its timers and redis-py's reply machinery for each batch
    (``bench/redis_pipeline_bench.py`` compares the two).

    An error reply becomes its command's result. A broken connection, or one
    that leaves a batch unanswered for ``timeout`` seconds, fails every batch
    written on it; the next call opens a new one.
    """

    def __init__(self, pool: aioredis.ConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: AbstractConnection | None = None
        self._opening: asyncio.Task[AbstractConnection] | None = None
        self._reader: asyncio.Task[None] | None = None
        # Batches written and not yet answered: size, replies so far, where they
        # go, when written.
        self._waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]], float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False  # the reader was stopped for an overdue batch

    async def call(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write; return their replies, in order."""
        if not commands:
            return []
        conn = self._conn
        if conn is None:
            conn = await self._open()
        writer = conn._writer
        if conn is not self._conn or writer is None:  # lost while this call waited to open it
            raise ConnectionError("the connection to redis was lost")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((len(commands), [], future, loop.time()))
        writer.write(b"".join(hiredis.pack_command(command) for command in commands))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._watch)
        return await future

    def _watch(self) -> None:
        """Stop the reader if the oldest batch is overdue; else look again when it would be."""
        self._watchdog = None
        if not self._waiting or self._reader is None:
            return
        overdue = self._waiting[0][3] + self._timeout - asyncio.get_running_loop().time()
        if overdue <= 0:
            self._expired = True
            self._reader.cancel()
        else:
            self._watchdog = asyncio.get_running_loop().call_later(overdue, self._watch)

    async def _open(self) -> AbstractConnection:
        # One opening at a time: callers that wait for it write in the order they came.
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _connect(self) -> AbstractConnection:
        conn = await self._pool.get_connection()
        self._conn = conn
        self._reader = asyncio.ensure_future(self._read_forever(conn))
        return conn

    async def _read_forever(self, conn: AbstractConnection) -> None:
        """Hand each written batch its replies; on any failure, fail them all."""
        try:
            stream, reader = _hiredis_reader(conn)
            while True:
                data = await stream.read(READ_SIZE)
                if not data:
                    raise ConnectionError("redis closed the connection")
                reader.feed(data)
                self._hand_out(reader)
        except asyncio.CancelledError:
            if not self._expired:
                await self._drop(conn, ConnectionError("the connection to redis was closed"))
                raise
            timeout = f"redis did not answer within {self._timeout:g} s"
            await self._drop(conn, asyncio.TimeoutError(timeout))
        except Exception as exc:
            await self._drop(conn, exc)

    def _hand_out(self, reader: Any) -> None:
        waiting = self._waiting
        while True:
            reply = reader.gets()
            if reply is _NOT_ENOUGH_DATA:
                return
            if isinstance(reply, ConnectionError):
                raise reply
            if not waiting:
                raise ConnectionError("redis sent a reply nobody asked for")
            size, replies, future, _ = waiting[0]
            replies.append(reply)
            if len(replies) == size:
                waiting.popleft()
                if not future.done():
                    future.set_result(replies)

    async def _drop(self, conn: AbstractConnection, error: Exception) -> None:
        if self._conn is conn:
            self._conn = None
        self._expired = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, deque()
        for _, _, future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    async def aclose(self) -> None:
        """Fail what is unanswered and give the connection back to its pool."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None


async def read_replies(conn: AbstractConnection) -> list[Any]:
    """Every complete reply buffered on ``conn``; if none, those the next bytes complete.

    For a subscription, whose replies come unasked: one await per chunk of
    bytes, not a chain of redis-py coroutines (and a debug string of each
    event) per reply. Raises ``ConnectionError`` once the connection is closed.
    """
    replies: list[Any] = []
    await _read(conn, replies, None)
    return replies


async def _read(conn: AbstractConnection, replies: list[Any], count: int | None) -> None:
    """Append ``conn``'s complete replies to ``replies`` until it holds ``count`` (None: any).

    An error reply is appended as its exception, as redis-py's
    ``raise_on_error=False`` would.
    """
    stream, reader = _hiredis_reader(conn)
    while True:
        while count is None or len(replies) < count:
            reply = reader.gets()
            if reply is _NOT_ENOUGH_DATA:
                break
            if isinstance(reply, ConnectionError):
                raise reply
            replies.append(reply)
        if replies and (count is None or len(replies) >= count):
            return
        data = await stream.read(READ_SIZE)
        if not data:
            raise ConnectionError("redis closed the connection")
        reader.feed(data)


def _hiredis_reader(conn: AbstractConnection) -> tuple[asyncio.StreamReader, Any]:
    """``conn``'s socket stream and the ``hiredis.Reader`` redis-py set up on connecting.

    Reading through that reader (``_parser._reader``: redis-py has no public
    call for this) loses nothing redis-py buffered. Raises ``ConnectionError``
    if the connection is closed.
    """
    parser, stream = conn._parser, conn._reader
    reader = getattr(parser, "_reader", None)
    if stream is None or reader is None or not getattr(parser, "_connected", False):
        raise ConnectionError("the connection to redis is closed")
    return stream, reader
