"""Which Redis server each key's commands go to: one server, or a Redis Cluster.

``--redis`` takes one URL (``redis://HOST:6379/0``, ``rediss://`` for TLS) or
a seed list of cluster nodes in one URL (``redis://HOST:7000,HOST:7001``).
A single URL whose server runs with ``cluster-enabled yes`` is a cluster too:
:meth:`RedisNodes.connect` asks. On a cluster, redis-py's ``RedisCluster``
keeps the slot map; commands still go out as packed writes on a pool per
node (:func:`send_packed`), since per-command objects cost the hub more CPU
than the rest of a delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
import redis._parsers.hiredis as redis_hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, ResponseError

__all__ = ["POOL_WAIT", "RedisNodes", "read_replies", "redacted", "send_packed", "split_seeds"]

#: Seconds a call may wait for a free connection before it counts as a failure.
POOL_WAIT: float = 30.0
#: Bytes asked of the socket per read in :func:`read_replies`.
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
        pools = [self._single, *self._pools.values()]
        for pool in pools:
            await pool.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()


def _major(info: dict[str, Any]) -> int:
    return int(str(info.get("redis_version", "0")).split(".")[0])


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
    if not commands:
        return []
    packed = b"".join(hiredis.pack_command(command) for command in commands)
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(packed, check_health=False)
        # The first reply waits under the socket timeout (redis-py's read);
        # the rest follow it in the same write, read as they complete.
        results: list[Any] = []
        try:
            results.append(await conn.read_response())
        except ResponseError as exc:
            results.append(exc)
        if len(commands) > 1:
            try:
                await _read(conn, results, len(commands))
            except BaseException:
                await conn.disconnect(nowait=True)  # half read: unfit for the next batch
                raise
    finally:
        await pool.release(conn)
    return results


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

    Reads with the ``hiredis.Reader`` redis-py set up on connecting
    (``_parser._reader``: redis-py has no public call for this), so nothing
    redis-py buffered is lost. An error reply is appended as its exception,
    as redis-py's ``raise_on_error=False`` would.
    """
    parser, stream = conn._parser, conn._reader
    reader = getattr(parser, "_reader", None)
    if stream is None or reader is None or not getattr(parser, "_connected", False):
        raise ConnectionError("the connection to redis is closed")
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
