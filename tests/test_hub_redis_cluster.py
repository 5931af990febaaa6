"""A room's Redis keys on a real 3-node Redis Cluster: one slot per room.

The hub's room keys carry the room as a hash tag (:func:`hub.redis_engine.room_key`);
these tests ask a real cluster (``CLUSTER KEYSLOT``) where they land, and check
:func:`redis_fixtures.key_slot` (CRC16) against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_fixtures import RedisCluster, key_slot, redis_cluster

from hub.redis_engine import room_key

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
    for key in ("fer:hubs", "fer:hub:ab12", "{}x", "a{}b{c}", "plain"):
        assert key_slot(key) == int(cluster.command(node, "CLUSTER", "KEYSLOT", key)), key
