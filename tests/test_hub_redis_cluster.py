"""Hubs on a real 3-node Redis Cluster (127.0.0.1, no replicas).

The hub's room keys carry the room as a hash tag (:func:`hub.redis_scripts.room_key`);
the first tests ask the cluster (``CLUSTER KEYSLOT``) where they land, and check
:func:`redis_fixtures.key_slot` (CRC16) against it. The rest run ``fer-hub``
processes on the cluster, some given the seed list and some one node's URL,
with rooms spread over all three nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import Peer
from redis_fixtures import (
    Hubs,
    RedisCluster,
    RedisServer,
    healthy,
    key_slot,
    messages,
    no_more_messages,
    redis_cluster,
)

from hub.redis_scripts import hubs_base, room_key

# Every key and the channel the scripts build for a room.
KINDS = ("seq", "pos", "log", "ids", "members", "topic", "events", "dm:ana\nm1")
# Names that would break a naive tag: braces, the escape character, a tag-looking name.
ROOMS = ("lobby", "}", "{", "a}b", "{x}", "100%", "%7D", "ünï", "a b:c")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    directory: Path = tmp_path_factory.mktemp("cluster")
    with redis_cluster(directory) as started:
        yield started


def test_all_of_a_rooms_keys_share_one_slot_and_crc16_agrees(cluster: RedisCluster) -> None:
    node = cluster.nodes[0]
    slots = set()
    for room in ROOMS:
        keys = [room_key("fer:", room, kind) for kind in KINDS]
        answered = {int(cluster.command(node, "CLUSTER", "KEYSLOT", key)) for key in keys}
        assert len(answered) == 1, (room, answered)
        assert {key_slot(key) for key in keys} == answered, room
        slots |= answered
    assert len(slots) > 1  # rooms spread over the cluster rather than all in one slot


def test_room_keys_are_distinct_for_distinct_rooms() -> None:
    names = {room_key("fer:", room, "seq") for room in ROOMS}
    assert len(names) == len(ROOMS)


def test_key_slot_matches_the_cluster_on_untagged_and_empty_tag_keys(
    cluster: RedisCluster,
) -> None:
    node = cluster.nodes[1]
    for key in (hubs_base("fer:"), "fer:hub:ab12", "{}x", "a{}b{c}", "plain"):
        assert key_slot(key) == int(cluster.command(node, "CLUSTER", "KEYSLOT", key)), key


# Rooms whose slots fall on each of the three nodes (checked below).
SPREAD = ("lobby", "r1", "r2", "r3", "r4", "r5")


@pytest.fixture
def hubs(cluster: RedisCluster) -> Iterator[Hubs]:
    for node in cluster.nodes:  # each test starts from empty rooms
        cluster.command(node, "FLUSHALL")
    running = Hubs(cluster.seeds, "0.2")
    try:
        yield running
    finally:
        running.stop_all()


def nodes_of(cluster: RedisCluster, rooms: tuple[str, ...]) -> set[int]:
    """The indexes of the nodes that serve ``rooms``, from each node's ``CLUSTER NODES``."""
    return nodes_of_keys(cluster, tuple(room_key("fer:", room, "seq") for room in rooms))


def registry_node(cluster: RedisCluster) -> int:
    """The index of the node that holds the hub registry (every hub's beat)."""
    (node,) = nodes_of_keys(cluster, (hubs_base("fer:"),))
    return node


def nodes_of_keys(cluster: RedisCluster, keys: tuple[str, ...]) -> set[int]:
    ranges = []
    for node in cluster.nodes:
        mine = next(line for line in cluster.command(node, "CLUSTER", "NODES").splitlines()
                    if "myself" in line)  # fmt: skip
        bounds = [part.partition("-") for part in mine.split()[8:]]
        ranges.append([(int(low), int(high or low)) for low, _, high in bounds])
    slots = [key_slot(key) for key in keys]
    return {
        i for i, owned in enumerate(ranges) for s in slots if any(a <= s <= b for a, b in owned)
    }


@pytest.mark.timeout(60)
@pytest.mark.slow
async def test_hubs_on_a_cluster_deliver_across_hubs_in_rooms_on_every_node(
    cluster: RedisCluster, hubs: Hubs
) -> None:
    assert nodes_of(cluster, SPREAD) == {0, 1, 2}
    (one,) = hubs.start(1)  # the seed list
    (two,) = hubs.start(1, redis=cluster.nodes[1].url)  # one node: a cluster all the same
    async with contextlib.AsyncExitStack() as stack:
        pairs = []
        for room in SPREAD:
            ana = await stack.enter_async_context(Peer.open(one))
            bo = await stack.enter_async_context(Peer.open(two))
            await ana.join(room, "ana")
            await bo.join(room, "bo")
            pairs.append((ana, bo))
        for n in range(3):
            for ana, bo in pairs:
                await ana.say(f"a{n}")
                await bo.say(f"b{n}")
        for ana, bo in pairs:
            got = [await messages(peer, 6) for peer in (ana, bo)]
            assert [m["seq"] for m in got[0]] == list(range(1, 7))
            assert got[0] == got[1]  # one order, both hubs
            assert sorted(m["id"] for m in got[0]) == sorted(
                f"{w}{n}" for w in "ab" for n in range(3)
            )
            assert await no_more_messages(bo, 0.2)


@pytest.mark.timeout(60)
@pytest.mark.slow
async def test_a_client_resumes_on_the_other_hub_of_a_cluster_with_what_it_missed(
    hubs: Hubs,
) -> None:
    one, two = hubs.start(2)
    for room in SPREAD[:3]:
        async with Peer.open(two) as bo:
            await bo.join(room, "bo")
            async with Peer.open(one) as ana:
                await ana.join(room, "ana", session="s")
                await bo.say("b0")
                (seen,) = await messages(ana, 1)
            for n in range(1, 4):
                await bo.say(f"b{n}")
            await messages(bo, 4)
            async with Peer.open(two) as ana:
                joined = await ana.join(room, "ana", since=seen["seq"], session="s")
                assert [m["id"] for m in joined["history"]] == ["b1", "b2", "b3"]
                assert joined["truncated"] is False


@pytest.mark.timeout(60)
@pytest.mark.slow
async def test_a_killed_hub_on_a_cluster_leaves_presence_in_every_room(hubs: Hubs) -> None:
    doomed, staying = hubs.start(2)
    async with contextlib.AsyncExitStack() as stack:
        watchers = []
        for room in SPREAD[:4]:
            bo = await stack.enter_async_context(Peer.open(staying))
            await bo.join(room, "bo")
            dora = await stack.enter_async_context(Peer.open(doomed))
            await dora.join(room, "dora")
            assert (await bo.recv_type("presence"))["user"] == "dora"
            watchers.append(bo)
        hubs.kill(0)
        for bo in watchers:
            async with asyncio.timeout(10):
                frame = await bo.recv_type("presence")
            assert (frame["event"], frame["user"]) == ("leave", "dora")
            assert [m["user"] for m in frame["members"]] == ["bo"]


def node_id(cluster: RedisCluster, index: int) -> str:
    return cluster.command(cluster.nodes[index], "CLUSTER", "MYID").strip()


def move_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Migrate ``slot`` with its keys from node ``source`` to ``target``, as resharding does."""
    src, dst = cluster.nodes[source], cluster.nodes[target]
    src_id, dst_id = node_id(cluster, source), node_id(cluster, target)
    cluster.command(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
    cluster.command(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
    for _ in range(100):  # a room has a handful of keys
        keys = cluster.command(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "2").split()
        if not keys:
            break
        cluster.command(src, "MIGRATE", "127.0.0.1", str(dst.port), "", "0", "5000", "KEYS", *keys)
        time.sleep(0.05)  # let the hubs run commands mid-migration (ASK, TRYAGAIN)
    else:
        raise AssertionError(f"slot {slot} still has keys on its old node")
    for node in cluster.nodes:
        cluster.command(node, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)


@pytest.mark.timeout(60)
@pytest.mark.slow
async def test_a_room_whose_slot_migrates_mid_conversation_loses_and_repeats_nothing(
    cluster: RedisCluster, hubs: Hubs
) -> None:
    (source,) = nodes_of(cluster, ("lobby",))
    target = (source + 1) % len(cluster.nodes)
    await talk_through_a_migration(cluster, hubs.start(2), source, target)


@pytest.mark.timeout(60)
@pytest.mark.slow
async def test_a_room_moved_to_a_node_added_mid_conversation_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    # The hubs learn of the new node from the migration's ASK redirections.
    with redis_cluster(tmp_path) as cluster:
        hubs = Hubs(cluster.seeds, "0.2")
        try:
            urls = hubs.start(2)
            cluster.add_node()
            (source,) = nodes_of(cluster, ("lobby",))
            await talk_through_a_migration(cluster, urls, source, len(cluster.nodes) - 1)
        finally:
            hubs.stop_all()


async def talk_through_a_migration(
    cluster: RedisCluster, urls: list[str], source: int, target: int
) -> None:
    """ana on one hub talks in lobby while its slot moves from ``source`` to ``target``;
    she and bo, on the other hub, get every message once, in order."""
    slot = key_slot(room_key("fer:", "lobby", "seq"))
    one, two = urls
    total = 60
    async with Peer.open(one) as ana, Peer.open(two) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")

        async def talk() -> None:
            for n in range(total):
                await ana.say(f"m{n}")
                await asyncio.sleep(0.02)

        talking = asyncio.create_task(talk())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(move_slot, cluster, slot, source, target)
        await talking
        assert nodes_of(cluster, ("lobby",)) == {target}
        for peer in (ana, bo):
            got = await messages(peer, total)
            assert [m["id"] for m in got] == [f"m{n}" for n in range(total)]
            assert [m["seq"] for m in got] == list(range(1, total + 1))
            assert await no_more_messages(peer, 0.3)


async def fail_over(cluster: RedisCluster, primary: int, replica: RedisServer) -> None:
    """SIGKILL ``nodes[primary]`` and wait until ``replica`` has taken over its slots."""
    proc = cluster.nodes[primary].proc
    assert proc is not None
    proc.kill()  # the replica takes over after the 2 s node timeout
    async with asyncio.timeout(30):
        while "role:master" not in cluster.command(replica, "INFO", "replication"):
            await asyncio.sleep(0.1)


@pytest.mark.timeout(90)
@pytest.mark.slow
@pytest.mark.parametrize("failing", ["the room's primary", "the hub registry's primary"])
async def test_hubs_carry_on_after_a_primary_fails_over_to_its_replica(
    tmp_path: Path, failing: str
) -> None:
    with redis_cluster(tmp_path) as cluster:
        if failing == "the room's primary":
            room = "lobby"
            (primary,) = nodes_of(cluster, (room,))
        else:  # the hubs' beats fail; rooms elsewhere still work
            primary = registry_node(cluster)
            room = next(r for r in SPREAD if nodes_of(cluster, (r,)) != {primary})
        replica = cluster.add_node(replica_of=primary)
        hubs = Hubs(cluster.seeds, "0.2")
        try:
            one, two = hubs.start(2)
            async with Peer.open(one) as ana, Peer.open(two) as bo:
                await ana.join(room, "ana")
                await bo.join(room, "bo")
                await ana.say("before")
                for peer in (ana, bo):
                    assert [m["id"] for m in await messages(peer, 1)] == ["before"]
                await fail_over(cluster, primary, replica)
                # Posts fail ("unavailable") until the hubs find the new primary.
                acked = None
                async with asyncio.timeout(30):
                    for n in itertools.count():
                        await ana.say(f"after{n}")
                        frame = await ana.recv(10)
                        while frame["type"] not in ("message", "error"):
                            frame = await ana.recv(10)
                        if frame["type"] == "message":
                            acked = frame["id"]
                            break
                        await asyncio.sleep(0.2)
                # Posts refused meanwhile may still be acked late; bo gets exactly
                # what ana got acked, in the same order.
                later = [f["id"] for f in await ana.drain(1.0) if f["type"] == "message"]
                got = [f["id"] for f in await bo.drain(0.5) if f["type"] == "message"]
                assert got == [acked, *later]
                # bo's hub found the new primary too (it delivered ana's posts):
                # bo's own post is acked, and reaches ana through hers.
                await bo.say("bo-too")
                ack = await bo.recv(10)
                while ack["type"] not in ("message", "error"):
                    ack = await bo.recv(10)
                assert (ack["type"], ack.get("id")) == ("message", "bo-too"), ack
                assert [m["id"] for m in await messages(ana, 1)] == ["bo-too"]
                async with asyncio.timeout(10):  # both beat again: healthy for the balancer
                    while not all(
                        await asyncio.gather(*(asyncio.to_thread(healthy, u) for u in (one, two)))
                    ):
                        await asyncio.sleep(0.2)
        finally:
            hubs.stop_all()


@pytest.mark.timeout(90)
@pytest.mark.slow
async def test_an_idle_hub_finds_the_hub_registrys_new_primary_by_itself(tmp_path: Path) -> None:
    # Only its beats go to the failed node, and they fail to connect: no call
    # of its meets the cluster's MOVED or CLUSTERDOWN, which would have made it
    # read the slot map again.
    with redis_cluster(tmp_path) as cluster:
        primary = registry_node(cluster)
        room = next(r for r in SPREAD if nodes_of(cluster, (r,)) != {primary})
        replica = cluster.add_node(replica_of=primary)
        hubs = Hubs(cluster.seeds, "0.2")
        try:
            (one,) = hubs.start(1)
            async with Peer.open(one) as ana:
                await ana.join(room, "ana")
                await fail_over(cluster, primary, replica)
                async with asyncio.timeout(15):
                    while not await asyncio.to_thread(healthy, one):
                        await asyncio.sleep(0.2)
                await ana.say("still-here")
                assert [m["id"] for m in await messages(ana, 1)] == ["still-here"]
        finally:
            hubs.stop_all()
