"""hub.rooms: the sans-I/O core, driven directly with frames and a fake clock."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hub import protocol, rooms
from hub.protocol import ChatMessage, Emotion, Limits
from hub.rooms import Broadcast, Client, Close, Hub, Reply, TokenBucket
from hub.storage import MemoryStore, SqliteStore

T0 = 1000.0


def frames_for(actions: list[Any], client: Client) -> list[dict[str, Any]]:
    """Frames ``client`` would receive from ``actions``, decoded."""
    out = []
    for action in actions:
        to_client = isinstance(action, Reply) and action.client is client
        to_room = isinstance(action, Broadcast) and client in action.clients
        if to_client or to_room:
            out.append(json.loads(action.frame))
    return out


def closes(actions: list[Any]) -> list[tuple[Client, int]]:
    return [(a.client, a.code) for a in actions if isinstance(a, Close)]


def join(hub: Hub, client: Client, room: str, user: str, **kw: Any) -> list[Any]:
    frame = protocol.join_frame(room, user, kw.get("since"), kw.get("token"), kw.get("session"))
    return hub.receive_text(client, frame, T0)


def say(hub: Hub, client: Client, id: str, text: str = "hi", now: float = T0) -> list[Any]:
    return hub.receive_text(client, protocol.message_frame(id, text), now)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # one token back after 0.5 s at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_seq_rises_by_one_and_broadcast_reaches_only_the_room() -> None:
    hub = Hub()
    a, b, c = (hub.connect(T0) for _ in range(3))
    join(hub, a, "r", "ana")
    join(hub, b, "r", "bo")
    join(hub, c, "other", "cy")
    seqs = []
    for i in range(3):
        actions = say(hub, a, f"m{i}")
        [broadcast] = actions
        assert isinstance(broadcast, Broadcast)
        assert set(broadcast.clients) == {a, b}
        seqs.append(json.loads(broadcast.frame)["seq"])
    assert seqs == [1, 2, 3]
    assert hub.rooms["other"].seq == 0


def test_hub_stamps_user_room_seq_and_ts() -> None:
    hub = Hub()
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    spoof = json.dumps(
        {
            "type": "message",
            "id": "x",
            "text": "hi",
            "emotion": None,
            "user": "mallory",
            "room": "elsewhere",
            "seq": 99,
            "ts": 1.0,
        }
    )
    [message] = frames_for(hub.receive_text(a, spoof, 1234.5), a)
    assert (message["user"], message["room"], message["seq"], message["ts"]) == (
        "ana",
        "r",
        1,
        1234.5,
    )


def test_resend_is_acknowledged_to_sender_only() -> None:
    hub = Hub()
    a, b = hub.connect(T0), hub.connect(T0)
    join(hub, a, "r", "ana")
    join(hub, b, "r", "bo")
    first = say(hub, a, "same", "one")
    again = say(hub, a, "same", "changed text is ignored")
    assert frames_for(again, a) == frames_for(first, a)
    assert frames_for(again, b) == []
    assert hub.rooms["r"].seq == 1
    # The same id from another user is another message.
    assert frames_for(say(hub, b, "same"), a)[0]["seq"] == 2


def test_history_and_exact_resume() -> None:
    hub = Hub(Limits(history_size=5))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    for i in range(8):
        say(hub, a, f"m{i}")
    late = hub.connect(T0)
    [joined] = frames_for(join(hub, late, "r", "late"), late)
    assert [m["seq"] for m in joined["history"]] == [4, 5, 6, 7, 8]
    assert joined["seq"] == 8 and joined["truncated"] is False

    resumer = hub.connect(T0)
    [joined] = frames_for(join(hub, resumer, "r", "res", since=6), resumer)
    assert [m["seq"] for m in joined["history"]] == [7, 8]
    assert joined["truncated"] is False

    caught_up = hub.connect(T0)
    [joined] = frames_for(join(hub, caught_up, "r", "cu", since=8), caught_up)
    assert joined["history"] == [] and joined["truncated"] is False

    too_old = hub.connect(T0)
    [joined] = frames_for(join(hub, too_old, "r", "old", since=1), too_old)
    assert [m["seq"] for m in joined["history"]] == [4, 5, 6, 7, 8]
    assert joined["truncated"] is True


def test_name_taken_and_session_takeover() -> None:
    hub = Hub()
    first, thief, again = hub.connect(T0), hub.connect(T0), hub.connect(T0)
    join(hub, first, "r", "ana", session="secret")
    [error] = frames_for(join(hub, thief, "r", "ana", session="guess"), thief)
    assert error["code"] == "name_taken"
    [error] = frames_for(join(hub, thief, "r", "ana"), thief)
    assert error["code"] == "name_taken"

    actions = join(hub, again, "r", "ana", session="secret")
    assert frames_for(actions, first)[0]["code"] == "session_replaced"
    assert closes(actions) == [(first, protocol.CLOSE_NORMAL)]
    assert frames_for(actions, again)[0]["type"] == "joined"
    # The old connection's disconnect must not announce a leave.
    assert hub.disconnect(first) == []
    assert hub.rooms["r"].clients() == [again]
    # A name is free again once its holder leaves.
    hub.disconnect(again)
    assert frames_for(join(hub, thief, "r", "ana"), thief)[0]["type"] == "joined"


def test_presence_on_join_and_leave() -> None:
    hub = Hub()
    a, b = hub.connect(T0), hub.connect(T0)
    join(hub, a, "r", "ana")
    [presence] = frames_for(join(hub, b, "r", "bo"), a)
    assert presence["event"] == "join" and presence["user"] == "bo"
    assert [m["user"] for m in presence["members"]] == ["ana", "bo"]
    [presence] = frames_for(hub.disconnect(b), a)
    assert presence["event"] == "leave" and presence["members"] == [
        {"user": "ana", "emotion": None}
    ]


def test_member_emotion_follows_latest_message() -> None:
    hub = Hub()
    a, b = hub.connect(T0), hub.connect(T0)
    join(hub, a, "r", "ana")
    hub.receive_text(a, protocol.message_frame("m", "hi", Emotion("fear", 0.8)), T0)
    [joined] = frames_for(join(hub, b, "r", "bo"), b)
    assert joined["members"][0] == {"user": "ana", "emotion": {"label": "fear", "confidence": 0.8}}


def test_rate_limit_then_strikes_close_with_1008() -> None:
    hub = Hub(Limits(rate_per_second=1.0, rate_burst=3, max_strikes=4))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")  # spends one token
    assert frames_for(say(hub, a, "1"), a)[0]["type"] == "message"
    assert frames_for(say(hub, a, "2"), a)[0]["type"] == "message"
    assert frames_for(say(hub, a, "3"), a)[0]["code"] == "rate_limited"
    # A second later one token is back, and an accepted frame clears strikes.
    assert frames_for(say(hub, a, "3", now=T0 + 1), a)[0]["type"] == "message"
    for i in range(3):
        assert frames_for(say(hub, a, f"x{i}", now=T0 + 1), a)[0]["code"] == "rate_limited"
    actions = say(hub, a, "x4", now=T0 + 1)
    assert frames_for(actions, a)[0]["code"] == "too_many_errors"
    assert closes(actions) == [(a, protocol.CLOSE_POLICY_VIOLATION)]
    assert hub.receive_text(a, protocol.message_frame("y", "hi"), T0 + 100) == []


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (protocol.message_frame("m", "hi"), "not_joined"),
        ("{not json", "bad_json"),
        ('{"type": "message", "id": "m", "text": 3}', "bad_field"),
    ],
)
def test_refusals_before_join(frame: str, code: str) -> None:
    hub = Hub()
    a = hub.connect(T0)
    [error] = frames_for(hub.receive_text(a, frame, T0), a)
    assert error["code"] == code
    assert hub.rooms == {} or all(not r.members for r in hub.rooms.values())


def test_second_join_is_refused() -> None:
    hub = Hub()
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    assert frames_for(join(hub, a, "s", "ana"), a)[0]["code"] == "already_joined"
    assert "s" not in hub.rooms


def test_token_required() -> None:
    hub = Hub(token="sesame")
    a, b = hub.connect(T0), hub.connect(T0)
    actions = join(hub, a, "r", "ana", token="wrong")
    assert frames_for(actions, a)[0]["code"] == "unauthorized"
    assert closes(actions) == [(a, protocol.CLOSE_POLICY_VIOLATION)]
    assert frames_for(join(hub, b, "r", "bo", token="sesame"), b)[0]["type"] == "joined"


def test_binary_and_oversized_frames_close() -> None:
    hub = Hub(Limits(max_frame_bytes=100))
    a, b = hub.connect(T0), hub.connect(T0)
    actions = hub.receive_binary(a)
    assert frames_for(actions, a)[0]["code"] == "binary_frame"
    assert closes(actions) == [(a, protocol.CLOSE_UNSUPPORTED_DATA)]
    actions = hub.receive_text(b, "x" * 101, T0)
    assert frames_for(actions, b)[0]["code"] == "frame_too_big"
    assert closes(actions) == [(b, protocol.CLOSE_MESSAGE_TOO_BIG)]


class FailingStore(MemoryStore):
    def append(self, message: ChatMessage) -> None:
        raise OSError("disk full")


def test_nothing_is_acknowledged_before_it_is_stored() -> None:
    hub = Hub(store=FailingStore())
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    with pytest.raises(OSError):
        say(hub, a, "m")
    assert hub.rooms["r"].seq == 0 and not hub.rooms["r"].history


def test_sqlite_store_restores_seq_history_and_dedup(tmp_path: Any) -> None:
    path = tmp_path / "hub.sqlite3"
    hub = Hub(Limits(history_size=3), SqliteStore(path))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    for i in range(5):
        hub.receive_text(a, protocol.message_frame(f"m{i}", f"t{i}", Emotion("sad", 0.5)), T0)
    hub.store.close()

    hub = Hub(Limits(history_size=3), SqliteStore(path))
    b = hub.connect(T0)
    [joined] = frames_for(join(hub, b, "r", "ana"), b)
    assert joined["seq"] == 5
    assert [(m["seq"], m["text"]) for m in joined["history"]] == [(3, "t2"), (4, "t3"), (5, "t4")]
    assert joined["history"][0]["emotion"] == {"label": "sad", "confidence": 0.5}
    # A resend of a message acknowledged before the restart is still a duplicate.
    [ack] = frames_for(say(hub, b, "m0"), b)
    assert ack["seq"] == 1
    [new] = frames_for(say(hub, b, "m5"), b)
    assert new["seq"] == 6
    hub.store.close()


def stored_seqs(path: Path, room: str = "r") -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT seq FROM messages WHERE room = ? ORDER BY seq", (room,))
        return [seq for (seq,) in rows]


def test_sqlite_store_keeps_at_most_keep_per_room_pruning_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    hub = Hub(Limits(history_size=3, rate_burst=1000), SqliteStore(path, keep=20))
    a, b = hub.connect(T0), hub.connect(T0)
    join(hub, a, "r", "ana")
    join(hub, b, "other", "bo")
    say(hub, b, "o1")
    counts = []
    for i in range(45):
        say(hub, a, f"m{i}")
        counts.append(len(stored_seqs(path)))
    # Up to keep + 10 % rows, then one prune back to keep: not a delete per insert.
    assert counts[:22] == list(range(1, 23))
    assert counts[22] == 20 and counts[23:25] == [21, 22] and counts[25] == 20
    assert max(counts) == 22
    assert stored_seqs(path) == list(range(25, 46))  # the newest, none missing
    assert stored_seqs(path, "other") == [1]  # another room's rows are its own
    hub.store.close()
    # After a restart the room's seq continues from the newest kept message.
    hub = Hub(Limits(history_size=3), SqliteStore(path, keep=20))
    c = hub.connect(T0)
    assert frames_for(join(hub, c, "r", "cy"), c)[0]["seq"] == 45
    assert frames_for(say(hub, c, "next"), c)[0]["seq"] == 46
    hub.store.close()


def test_sqlite_store_dedups_beyond_the_memory_index_within_the_kept_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rooms, "DEDUP_MIN", 4)  # the in-memory index remembers 4 messages
    path = tmp_path / "hub.sqlite3"
    hub = Hub(Limits(history_size=3, rate_burst=1000), SqliteStore(path, keep=10))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    acks = [frames_for(say(hub, a, f"m{i}", f"t{i}"), a)[0] for i in range(14)]
    hub.store.close()

    hub = Hub(Limits(history_size=3, rate_burst=1000), SqliteStore(path, keep=10))
    a, b = hub.connect(T0), hub.connect(T0)
    join(hub, a, "r", "ana")
    join(hub, b, "r", "bo")
    assert hub.rooms["r"].find("ana", "m5") is None  # forgotten in memory ...
    actions = say(hub, a, "m5", "resent")
    assert frames_for(actions, a) == [acks[5]]  # ... but acknowledged again from the store
    assert frames_for(actions, b) == []  # and not broadcast twice
    assert hub.rooms["r"].seq == 14
    # A message older than the kept window is gone, so its id is free again.
    assert 1 not in stored_seqs(path)
    assert frames_for(say(hub, a, "m0", "old id"), b)[0]["seq"] == 15
    hub.store.close()


def test_sqlite_file_from_before_the_dedup_index_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
            " user TEXT NOT NULL, text TEXT NOT NULL, label TEXT, confidence REAL,"
            " ts REAL NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID"
        )
        rows = [("r", 1, "a", "ana", "first", None, None, 1.0)]
        rows += [("r", 2, "b", "ana", "other", None, None, 2.0)]
        rows += [("r", 3, "a", "ana", "resent twice", None, None, 3.0)]
        db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    store = SqliteStore(path)
    try:
        # The earlier copy goes: dropping the latest would lower the room's seq.
        assert stored_seqs(path) == [2, 3]
        assert store.load("r", 10)[0] == 3
        assert store.find("r", "ana", "a") == ChatMessage(
            "r", 3, "a", "ana", "resent twice", None, 3.0
        )
    finally:
        store.close()


def test_resume_older_than_what_is_kept_is_marked_truncated(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    hub = Hub(Limits(history_size=5, rate_burst=1000), SqliteStore(path, keep=8))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    for i in range(30):
        say(hub, a, f"m{i}")
    hub.store.close()

    hub = Hub(Limits(history_size=5), SqliteStore(path, keep=8))
    old, recent = hub.connect(T0), hub.connect(T0)
    [joined] = frames_for(join(hub, old, "r", "old", since=2), old)
    assert joined["truncated"] is True
    assert [m["seq"] for m in joined["history"]] == [26, 27, 28, 29, 30]
    [joined] = frames_for(join(hub, recent, "r", "recent", since=27), recent)
    assert joined["truncated"] is False
    assert [m["seq"] for m in joined["history"]] == [28, 29, 30]
    hub.store.close()


def test_joined_frame_never_exceeds_the_server_frame_limit() -> None:
    hub = Hub(Limits(rate_burst=1000))
    a = hub.connect(T0)
    join(hub, a, "r", "ana")
    wide = "😄" * protocol.MAX_TEXT_CHARS  # 4 bytes per character in UTF-8
    for i in range(protocol.HISTORY_SIZE):
        assert frames_for(say(hub, a, f"m{i}", wide), a)[0]["type"] == "message"
    late = hub.connect(T0)
    [reply] = [a for a in join(hub, late, "r", "late") if isinstance(a, Reply)]
    assert len(reply.frame.encode()) <= protocol.MAX_SERVER_FRAME_BYTES
    joined = json.loads(reply.frame)
    seqs = [m["seq"] for m in joined["history"]]
    assert joined["truncated"] is True
    assert seqs == list(range(seqs[0], protocol.HISTORY_SIZE + 1))  # the newest, in order
    assert len(seqs) > protocol.HISTORY_SIZE // 2


def test_room_limit() -> None:
    hub = Hub(Limits(max_rooms=2))
    a, b, c, d = (hub.connect(T0) for _ in range(4))
    join(hub, a, "one", "ana")
    join(hub, b, "two", "bo")
    assert frames_for(join(hub, c, "three", "cy"), c)[0]["code"] == "room_limit"
    assert "three" not in hub.rooms
    assert frames_for(join(hub, d, "one", "dan"), d)[0]["type"] == "joined"
