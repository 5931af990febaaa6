"""Several ``fer-hub --redis`` processes on one real ``redis-server``, all on 127.0.0.1.

Each test starts its own Redis (temporary port and directory, AOF on) and hub
processes with a fast heartbeat, and skips with a message where
``redis-server`` cannot be started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import REPO, Peer, free_port, hub, hub_output
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_fixtures import (
    Hubs,
    RedisServer,
    healthy,
    member,
    messages,
    no_more_messages,
    redis_server,
)

from hub import protocol
from hub.redis_nodes import READ_SIZE, Multiplexed

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

#: Fast heartbeat: a dead hub leaves presence within about 2 s.
BEAT = "0.2"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def hubs(redis: RedisServer) -> Iterator[Hubs]:
    running = Hubs(redis.url, BEAT)
    try:
        yield running
    finally:
        running.stop_all()


async def test_a_message_through_any_hub_reaches_everyone_once_in_one_order(hubs: Hubs) -> None:
    urls = hubs.start(3)
    users = [f"u{i}" for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(member(urls[i % 3], u)) for i, u in enumerate(users)
        ]
        per_sender = 10

        async def send_all(peer: Peer, user: str) -> None:
            for n in range(per_sender):
                await peer.say(f"{user}-{n}", f"{user} says {n}")

        await asyncio.gather(*(send_all(p, u) for p, u in zip(peers, users, strict=True)))
        total = per_sender * len(users)
        received = await asyncio.gather(*(messages(p, total) for p in peers))
        orders = [[(m["seq"], m["id"]) for m in got] for got in received]
        assert [seq for seq, _ in orders[0]] == list(range(1, total + 1))
        assert len({id for _, id in orders[0]}) == total  # each message once
        assert all(order == orders[0] for order in orders)  # the same order on every hub
        for peer in peers:
            assert await no_more_messages(peer)


async def test_a_burst_sent_without_waiting_is_stored_in_each_senders_order(hubs: Hubs) -> None:
    # The hub keeps many posts of one connection out to Redis at once; they
    # must still be stored, and reach everyone, in the order they were sent.
    one, two = hubs.start(2)
    per_sender = 150
    async with member(one, "ana") as ana, member(one, "bo") as bo, member(two, "cy") as cy:

        async def burst(peer: Peer, user: str) -> None:
            for n in range(per_sender):
                await peer.say(f"{user}-{n}", f"{user} says {n}")

        await asyncio.gather(burst(ana, "ana"), burst(bo, "bo"))
        total = 2 * per_sender
        received = await asyncio.gather(*(messages(p, total) for p in (ana, bo, cy)))
        order = [(m["seq"], m["id"]) for m in received[0]]
        assert [seq for seq, _ in order] == list(range(1, total + 1))
        for user in ("ana", "bo"):
            assert [id for _, id in order if id.startswith(user)] == [
                f"{user}-{n}" for n in range(per_sender)
            ]
        assert all([(m["seq"], m["id"]) for m in got] == order for got in received)
        assert await no_more_messages(cy)


async def test_presence_is_the_union_of_every_hub(hubs: Hubs) -> None:
    one, two = hubs.start(2)
    async with Peer.open(one) as ana:
        await ana.join("lobby", "ana")
        async with Peer.open(two) as bo:
            joined = await bo.join("lobby", "bo")
            assert {m["user"] for m in joined["members"]} == {"ana", "bo"}
            came = await ana.recv_type("presence")
            assert (came["event"], came["user"]) == ("join", "bo")
        went = await ana.recv_type("presence")
        assert (went["event"], went["user"]) == ("leave", "bo")
        assert [m["user"] for m in went["members"]] == ["ana"]


async def test_a_client_resuming_on_another_hub_gets_exactly_what_it_missed(hubs: Hubs) -> None:
    one, two = hubs.start(2)
    async with member(two, "bo") as bo:
        async with member(one, "ana", session="ana-s") as ana:
            for n in range(5):
                await bo.say(f"b{n}")
            last = (await messages(ana, 5))[-1]["seq"]
        for n in range(5, 12):
            await bo.say(f"b{n}")
        await messages(bo, 12)
        async with Peer.open(two) as ana:
            joined = await ana.join("lobby", "ana", since=last, session="ana-s")
            assert [m["seq"] for m in joined["history"]] == list(range(last + 1, 13))
            assert [m["id"] for m in joined["history"]] == [f"b{n}" for n in range(5, 12)]
            assert joined["truncated"] is False and joined["seq"] == 12


async def test_a_resend_through_another_hub_is_acknowledged_not_repeated(hubs: Hubs) -> None:
    one, two, three = hubs.start(3)
    async with member(three, "cy") as cy:
        async with member(one, "ana", session="s") as ana:
            await ana.say("m1", "once")
            ack = await ana.recv_type("message")
        async with member(two, "ana", since=ack["seq"], session="s") as ana:
            await ana.say("m1", "once")  # its ack was lost, as far as it knows
            again = await ana.recv_type("message")
            assert again == ack
        assert [m["id"] for m in await messages(cy, 1)] == ["m1"]
        assert await no_more_messages(cy)


async def test_a_name_is_one_per_room_across_hubs_and_a_session_can_move(hubs: Hubs) -> None:
    one, two = hubs.start(2)
    async with member(one, "ana", session="first") as first:
        async with Peer.open(two) as impostor:
            await impostor.send(protocol.join_frame("lobby", "ana", None, None, "other"))
            await impostor.expect_error("name_taken")
        async with member(two, "ana", session="first") as moved:
            await first.expect_error("session_replaced")
            assert (await first.expect_close())[0] == protocol.CLOSE_NORMAL
            await moved.say("m1")
            assert (await moved.recv_type("message"))["id"] == "m1"


async def test_a_killed_hub_leaves_presence_and_its_clients_lose_nothing(hubs: Hubs) -> None:
    doomed, two, three = hubs.start(3)
    async with member(two, "bo") as bo, member(three, "cy") as cy:
        async with member(doomed, "dora"), member(doomed, "ana", session="s") as ana:
            await bo.drain(0.3)
            for n in range(20):
                await ana.say(f"a{n}", f"text {n}")
            acked = [m["id"] for m in await messages(ana, 5)]  # some, maybe not all
            hubs.kill(0)
        # ana's client reconnects elsewhere with its session and resends what
        # was not acknowledged; the hubs deduplicate whatever did get through.
        async with Peer.open(three) as ana:
            joined = await ana.join("lobby", "ana", since=0, session="s")
            stored = {m["id"] for m in joined["history"]}
            assert set(acked) <= stored
            for n in range(20):
                if f"a{n}" not in stored:
                    await ana.say(f"a{n}", f"text {n}")
            for peer in (bo, cy):
                got = await messages(peer, 20)
                assert sorted(m["id"] for m in got) == sorted(f"a{n}" for n in range(20))
                assert [m["seq"] for m in got] == list(range(1, 21))
        # dora never came back: every other hub drops her within the heartbeat bound.
        async with asyncio.timeout(10):
            while True:
                frame = await bo.recv_type("presence")
                if frame["event"] == "leave" and frame["user"] == "dora":
                    break
        assert "dora" not in {m["user"] for m in frame["members"]}


async def test_a_hub_stopped_with_sigterm_takes_its_members_out_of_presence_at_once(
    hubs: Hubs,
) -> None:
    # Slow beats: only the stopping hub itself can make the leave this quick.
    stopping, staying = hubs.start(2, beat="10")
    async with member(staying, "bo") as bo:
        async with member(stopping, "dora"):
            await bo.recv_type("presence")
            hubs.procs[0].terminate()
            async with asyncio.timeout(5):
                frame = await bo.recv_type("presence")
        assert (frame["event"], frame["user"]) == ("leave", "dora")
        assert hubs.procs[0].wait(10) == 0


async def test_hubs_ride_out_a_redis_restart_and_lose_nothing_acknowledged(
    hubs: Hubs, redis: RedisServer
) -> None:
    one, two = hubs.start(2)
    async with member(one, "ana", session="s") as ana, member(two, "bo") as bo:
        await ana.drain(0.3)
        for n in range(3):
            await ana.say(f"m{n}")
        assert [m["seq"] for m in await messages(bo, 3)] == [1, 2, 3]
        await asyncio.to_thread(redis.stop)
        # Connections stay open; the hubs say why nothing goes through.
        assert (await bo.expect_error("unavailable"))["code"] == "unavailable"
        await ana.say("m3", "during the outage")
        await ana.expect_error("unavailable")
        await asyncio.to_thread(redis.start)
        # A client resends what was refused (fer_tui does it by itself).
        async with asyncio.timeout(20):
            while True:
                await ana.say("m3", "during the outage")
                frames = await ana.drain(0.5)
                if any(f["type"] == "message" and f["id"] == "m3" for f in frames):
                    break
        got = await messages(bo, 1)
        assert (got[0]["id"], got[0]["seq"]) == ("m3", 4)
        assert [m["id"] for m in await _history(two)] == ["m0", "m1", "m2", "m3"]
    hubs.stop_all()
    for proc in hubs.procs:  # the outage and the recovery are in each hub's log
        log = hub_output(proc)
        assert "redis unreachable (" in log and "redis is back after" in log, log


async def _history(url: str) -> list[dict[str, Any]]:
    async with Peer.open(url) as peer:
        return (await peer.join("lobby", "reader", since=0))["history"]


def test_an_unreachable_redis_stops_the_hub_with_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "--port", "0", "--redis", f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert "cannot reach redis at redis://127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_redis_and_history_db_exclude_each_other() -> None:
    from hub.__main__ import main

    with pytest.raises(SystemExit) as exit:
        main(["--redis", "redis://127.0.0.1:1/0", "--history-db", "x.sqlite3"])
    assert exit.value.code == 2


async def test_the_client_app_delivers_what_it_typed_during_a_redis_outage(
    hubs: Hubs, redis: RedisServer
) -> None:
    from fer_tui.connection import HubConnection, HubEvent, MessageReceived

    one, two = hubs.start(2)
    events: list[HubEvent] = []
    conn = HubConnection(one, "lobby", "ana", events.append, min_backoff=0.05)
    task = asyncio.create_task(conn.run())
    try:
        async with member(two, "bo") as bo:
            async with asyncio.timeout(10):
                while conn.state != "online":
                    await asyncio.sleep(0.02)
            await asyncio.to_thread(redis.stop)
            await bo.expect_error("unavailable")
            sent = conn.send("typed while the storage was down", protocol.Emotion("sad", 0.7))
            await asyncio.sleep(0.5)
            assert conn.pending == 1
            await asyncio.to_thread(redis.start)
            (got,) = await messages(bo, 1)
            assert got["id"] == sent
            async with asyncio.timeout(10):
                while conn.pending:
                    await asyncio.sleep(0.02)
            assert [e.message.id for e in events if isinstance(e, MessageReceived)] == [sent]
    finally:
        await conn.close()
        await asyncio.wait_for(task, 5)


async def test_more_posts_at_once_than_redis_connections_queue_instead_of_failing(
    hubs: Hubs,
) -> None:
    from hub.redis_engine import REDIS_CONNECTIONS

    (url,) = hubs.start(1)
    count = 4 * REDIS_CONNECTIONS
    async with contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(Peer.open(url)) for _ in range(count)]
        for n, peer in enumerate(peers):
            await peer.join(f"room{n}", "ana")  # one room each: acks only, no fan-out
        await asyncio.gather(*(peer.say("m1") for peer in peers))
        acks = await asyncio.gather(*(peer.recv(20) for peer in peers))
        assert [(a["type"], a["seq"]) for a in acks] == [("message", 1)] * count


async def test_a_room_left_empty_on_a_hub_is_released_and_works_when_rejoined(
    hubs: Hubs, redis: RedisServer
) -> None:
    import redis as redis_client

    def subscribers() -> int:
        with redis_client.Redis.from_url(redis.url) as client:
            # Redis 7 has sharded pub/sub, which the hubs then use.
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", "fer:room:{lobby}:events")
            return int(reply[1])

    one, two = hubs.start(2)
    async with member(two, "bo") as bo:
        async with member(one, "ana") as ana:
            await ana.say("m1")
            await messages(bo, 1)
            assert subscribers() == 2
        await asyncio.sleep(1.0)  # several beats: hub one unsubscribes from the room
        assert subscribers() == 1
        await bo.say("m2")  # published while hub one hears nothing of the room
        await messages(bo, 1)
        async with member(one, "ana", since=1) as ana:
            await bo.say("m3")
            (got,) = await messages(ana, 1)
            assert (got["id"], got["seq"]) == ("m3", 3)
        joined = await _history(one)
        assert [m["id"] for m in joined] == ["m1", "m2", "m3"]


async def test_a_room_redis_refuses_to_subscribe_to_fails_its_join_and_spares_the_rest(
    redis: RedisServer, hubs: Hubs
) -> None:
    # An error reply on the subscription's connection (an ACL's NOPERM here; a
    # stale slot map's MOVED on a cluster) must not leave the hub deaf to the
    # rooms it already hears on that connection.
    import redis.asyncio as aioredis

    allowed = ("&fer:hub:*:control", "&fer:room:{lobby}:events")
    async with aioredis.Redis.from_url(redis.url) as admin:
        await admin.execute_command(
            "ACL", "SETUSER", "hub", "on", ">pw", "~*", "+@all", "resetchannels", *allowed
        )
    (url,) = hubs.start(1, redis=redis.url.replace("redis://", "redis://hub:pw@"))
    async with member(url, "ana") as ana, member(url, "cy") as cy, Peer.open(url) as bo:
        await bo.send(protocol.join_frame("secret", "bo", None, None, None))
        await bo.expect_error("unavailable")
        await ana.say("after")
        assert [m["id"] for m in await messages(cy, 1)] == ["after"]
        async with asyncio.timeout(10):  # the refused room is dropped; the hub settles
            while not await asyncio.to_thread(healthy, url):
                await asyncio.sleep(0.2)
        await ana.say("settled")
        assert [m["id"] for m in await messages(cy, 1)] == ["settled"]
    hubs.stop_all()
    assert "NoPermissionError" in hub_output(hubs.procs[0])


async def test_two_hubs_share_rooms_over_plain_pub_sub_where_redis_predates_sharded_channels(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_client

    from hub import redis_nodes

    monkeypatch.setattr(redis_nodes, "_major", lambda info: 6)  # as a Redis 6 answers
    async with (
        hub(redis_url=redis.url, redis_heartbeat=0.2) as one,
        hub(redis_url=redis.url, redis_heartbeat=0.2) as two,
        member(one.url, "ana") as ana,
        member(two.url, "bo") as bo,
    ):
        await ana.say("m1")
        assert [m["id"] for m in await messages(bo, 1)] == ["m1"]
        with redis_client.Redis.from_url(redis.url) as client:
            assert client.pubsub_numsub("fer:room:{lobby}:events")[0][1] == 2
            assert int(client.execute_command("PUBSUB", "SHARDNUMSUB", "x")[1]) == 0


@pytest.mark.parametrize(
    ("url", "first", "seeds"),
    [
        ("redis://h:6379/0", "redis://h:6379/0", []),
        ("redis://u:p@a:7000,b:7001,c:7002", "redis://u:p@a:7000", [("b", 7001), ("c", 7002)]),
        ("rediss://:pw@a:1,[::1]:2/3?x=1", "rediss://:pw@a:1/3?x=1", [("::1", 2)]),
    ],
)
def test_a_seed_list_is_split_into_its_first_url_and_the_other_nodes(
    url: str, first: str, seeds: list[tuple[str, int]]
) -> None:
    from hub.redis_nodes import split_seeds

    assert split_seeds(url) == (first, seeds)


def test_a_malformed_seed_list_stops_the_hub_with_one_clear_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "--redis", "redis://a:7000,b"],
        capture_output=True, text=True, timeout=30, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--redis: a seed must be HOST:PORT, got 'b'" in done.stderr


async def test_a_subscription_reads_every_event_whole_and_in_order_then_its_close(
    redis: RedisServer,
) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hub.redis_nodes import READ_SIZE, read_replies

    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("ch")
        # Many small events at once, and one that spans several socket reads.
        sent = [f"event {i}" for i in range(200)] + ["x" * (3 * READ_SIZE)]
        for payload in sent:
            await client.publish("ch", payload)
        got: list[Any] = []
        while len(got) < 1 + len(sent):
            got += await read_replies(pubsub.connection)
        assert [r[0] for r in got] == ["subscribe"] + ["message"] * len(sent)
        assert [r[2] for r in got[1:]] == sent
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(read_replies(pubsub.connection), 10)
    finally:
        await pubsub.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def multiplexed(redis: RedisServer, timeout: float) -> AsyncIterator[Multiplexed]:
    """The hub's shared connection to ``redis``, closed with its pool afterwards."""
    import redis.asyncio as aioredis

    pool = aioredis.ConnectionPool.from_url(redis.url, decode_responses=True)
    link = Multiplexed(pool, timeout)
    try:
        yield link
    finally:
        await link.aclose()
        await pool.aclose()


async def test_a_multiplexed_batch_gets_each_reply_in_order_with_errors_in_place(
    redis: RedisServer,
) -> None:
    from redis.exceptions import ResponseError

    async with multiplexed(redis, timeout=5.0) as link:
        value = "v" * 1000
        # Replies that span several socket reads, an error reply mid-batch.
        gets = [("GET", "a")] * (3 * READ_SIZE // len(value))
        commands = [("SET", "a", value), ("INCR", "a"), *gets, ("STRLEN", "a")]
        results = await link.call(commands)
        assert results[0] == "OK"
        assert isinstance(results[1], ResponseError)
        assert results[2:-1] == [value] * len(gets)
        assert results[-1] == len(value)
        # Batches written without waiting for each other: each gets its own replies.
        batches = [[("INCR", "n")] * k + [("ECHO", f"end{k}")] for k in range(1, 40)]
        answers = await asyncio.gather(*(link.call(batch) for batch in batches))
        counted = [n for answer in answers for n in answer[:-1]]
        assert counted == list(range(1, len(counted) + 1))
        assert [answer[-1] for answer in answers] == [f"end{k}" for k in range(1, 40)]


async def test_a_lost_or_silent_multiplexed_connection_fails_its_calls_and_the_next_reconnects(
    redis: RedisServer,
) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    admin = aioredis.Redis.from_url(redis.url, decode_responses=True)
    async with admin, multiplexed(redis, timeout=0.5) as link:
        (conn_id,) = await link.call([("CLIENT", "ID")])
        # Killed by the server while a call waits on it (BLPOP holds the reply).
        waiting = asyncio.ensure_future(link.call([("BLPOP", "never", "3")]))
        await asyncio.sleep(0.1)
        assert await admin.execute_command("CLIENT", "KILL", "ID", conn_id) == 1
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(waiting, 5)
        assert await link.call([("PING",)]) == ["PONG"]
        # Silent for longer than the timeout: the call fails, the next one goes through.
        with pytest.raises(asyncio.TimeoutError):
            await link.call([("BLPOP", "never", "2")])
        assert await link.call([("ECHO", "back")]) == ["back"]


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from('ab ,:"{}\\\u00e9'), max_size=40) | st.text(max_size=40),
    user=st.text(alphabet=st.sampled_from('ab,:"{}'), min_size=1, max_size=12),
    label=st.sampled_from(protocol.LABELS),
    confidence=st.floats(0.0, 1.0),
    picked=st.booleans(),
)
def test_the_emotion_sliced_from_a_chat_frame_is_the_messages_whatever_its_strings(
    text: str, user: str, label: str, confidence: float, picked: bool
) -> None:
    # The post script keeps the sender's emotion from this slice, not a second encoding.
    from hub.redis_engine import _emotion_json, _split_frame

    emotion = protocol.Emotion(label, confidence, picked=picked)
    message = protocol.ChatMessage("lobby", 0, 'x,"emotion":1', user, text, emotion, 1.0)
    _, tail = _split_frame(message)
    assert json.loads(_emotion_json(tail)) == emotion.to_json()


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.integers(1, 150), max_size=12), unordered=st.integers(0, 100))
def test_pipelines_are_cut_only_between_one_connections_run_of_posts(
    runs: list[int], unordered: int
) -> None:
    # A lane's posts of one loop turn must reach Redis in one write to be stored in order.
    from hub.redis_engine import MAX_PIPELINE, Lane, _batches

    calls: list[Any] = [("k", (), None, 0, None) for _ in range(unordered)]
    for length in runs:
        lane = Lane()
        calls += [("k", (), None, 0, lane) for _ in range(length)]
    batches = list(_batches(calls))
    assert [call for batch in batches for call in batch] == calls
    lanes = [{id(call[4]) for call in batch if call[4] is not None} for batch in batches]
    for i, batch in enumerate(batches):
        assert not any(lanes[i] & later for later in lanes[i + 1 :])  # a lane in one batch
        if i < len(batches) - 1:
            assert len(batch) >= MAX_PIPELINE  # cut only once a batch is full
