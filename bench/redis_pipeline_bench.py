"""The hub's post script through redis-py: one call each, a pipeline, packed writes.

    .venv/bin/python bench/redis_pipeline_bench.py [--senders 50] [--messages 100]

Why ``hub/redis_engine.py`` pipelines the scripts of one event-loop turn:
``senders`` concurrent callers each post ``messages`` times, first as separate
awaited calls (what the engine did first), then as one redis-py pipeline per
round of ``senders`` calls (what it did next), then as one hiredis-packed write
per round on a pooled connection (:func:`pooled_packed`), then
as that write on the one connection every round shares, without waiting for
the rounds before it (:class:`hub.redis_nodes.Multiplexed`, what the engine
does now; up to ``--in-flight`` rounds out at once), on a throwaway
``redis-server``. Prints
this process's CPU per post (redis-py's share of a hub's cost) and posts/s,
each mode run twice in alternation; the ratio is from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import hiredis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from redis_bench_support import RedisProcess, free_port  # noqa: E402

from hub.redis_engine import room_command  # noqa: E402
from hub.redis_nodes import Multiplexed, _read  # noqa: E402
from hub.redis_scripts import scripts  # noqa: E402

POST = scripts(sharded=True)["post"]

HEAD, TAIL = '{"type":"message","room":"r","seq":', ',"id":"x","text":"hello"}'


def post_args(sender: int, n: int) -> tuple[Any, ...]:
    """What follows ``EVALSHA sha`` in the engine's post of message ``n`` by ``sender``."""
    args = ("ana", f"m{n}", HEAD, TAIL, 10_000, "c", "")
    return room_command(POST, "bench:", f"room{sender}", args)[1][2:]


async def pooled_packed(
    pool: aioredis.ConnectionPool, commands: list[tuple[Any, ...]]
) -> list[Any]:
    """One hiredis-packed write on a connection taken from ``pool`` for it, as the engine did.

    The first reply is read through redis-py (its socket timeout), the rest
    straight off hiredis' reader (:func:`hub.redis_nodes.read_replies`' helper).
    """
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(
            b"".join(hiredis.pack_command(c) for c in commands), check_health=False
        )
        results = [await conn.read_response()]
        await _read(conn, results, len(commands))
        return results
    finally:
        await pool.release(conn)


async def run_mode(
    client: aioredis.Redis, sha: str, mode: str, senders: int, messages: int, in_flight: int
) -> tuple[float, float]:
    """Return (CPU µs per post, posts per second) for one mode."""

    async def one_by_one(sender: int) -> None:
        for n in range(messages):
            await client.evalsha(sha, *post_args(sender, n))

    await client.flushdb()
    cpu, wall = time.process_time(), time.perf_counter()
    if mode == "separate calls":
        await asyncio.gather(*(one_by_one(s) for s in range(senders)))
    elif mode == "packed write, pooled":
        for n in range(messages):
            commands = [("EVALSHA", sha, *post_args(s, n)) for s in range(senders)]
            await pooled_packed(client.connection_pool, commands)
    elif mode == "multiplexed":
        link = Multiplexed(client.connection_pool, timeout=10.0)
        rounds = [
            [("EVALSHA", sha, *post_args(s, n)) for s in range(senders)] for n in range(messages)
        ]
        for start in range(0, messages, in_flight):
            await asyncio.gather(*(link.call(r) for r in rounds[start : start + in_flight]))
        await link.aclose()
    else:
        for n in range(messages):
            pipe = client.pipeline(transaction=False)
            for sender in range(senders):
                pipe.evalsha(sha, *post_args(sender, n))
            await pipe.execute()
    posts = senders * messages
    return 1e6 * (time.process_time() - cpu) / posts, posts / (time.perf_counter() - wall)


async def main_async(args: argparse.Namespace) -> None:
    server = RedisProcess(free_port())
    try:
        server.wait_ready()
        pool = aioredis.BlockingConnectionPool.from_url(
            server.url, max_connections=32, decode_responses=True
        )
        client = aioredis.Redis(connection_pool=pool)
        sha = await client.script_load(POST.source)
        results: dict[str, list[tuple[float, float]]] = {
            "separate calls": [],
            "pipelined": [],
            "packed write, pooled": [],
            "multiplexed": [],
        }
        for _ in range(2):
            for mode in results:
                results[mode].append(
                    await run_mode(client, sha, mode, args.senders, args.messages, args.in_flight)
                )
        await client.aclose()
    finally:
        server.stop()
    print(
        f"{args.senders} senders × {args.messages} posts each of the hub's post script;"
        f" multiplexed: {args.in_flight} rounds in flight"
    )
    print()
    print("| mode | client CPU µs/post | posts/s |")
    print("|---|---:|---:|")
    medians = {}
    for mode, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        medians[mode] = (cpu, rate)
        print(f"| {mode} | {cpu:.1f} | {rate:,.0f} |")
    cpu_a, rate_a = medians["separate calls"]
    print()
    for mode in ("pipelined", "packed write, pooled", "multiplexed"):
        cpu_b, rate_b = medians[mode]
        print(
            f"{mode} vs separate calls: {cpu_a / cpu_b:.1f}× less CPU per post,"
            f" {rate_b / rate_a:.1f}× the posts/s"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument(
        "--in-flight", type=int, default=4, help="multiplexed rounds out at once (default 4)"
    )
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
