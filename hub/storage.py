"""Where the hub keeps messages: in memory (default) or in SQLite (``--history-db``).

The core (:mod:`hub.rooms`) calls :meth:`Store.append` for each new message
before acknowledging it, and :meth:`Store.load` when a room is first used, to
restore its ``seq``, history and dedup index after a restart.

:class:`SqliteStore` commits every message in WAL mode with
``synchronous=NORMAL``: a committed message survives the hub process being
killed; only a power cut can lose the last commits. Connection-level
durability against power loss would cost an fsync per message.

It keeps at most ``keep`` messages per room (``--history-keep``), never fewer
than the history a room sends (``--history-size``): when a room holds 10 %
more than that, its oldest messages are deleted in one statement, so pruning
costs nothing on most inserts. A unique index on ``(room, user, id)`` makes
:meth:`SqliteStore.append` recognise a resend of any message it still keeps,
also one older than the dedup index the core holds in memory.

Both stores also keep each room's topic and answer :meth:`Store.page`, which
lets a client page back through every message kept (a resume after a long
absence, or scrolling to the top of a room). :class:`MemoryStore` keeps
``keep`` messages per room in the hub's memory (about 0.5 KB each).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from .protocol import ChatMessage, Emotion, Topic

__all__ = ["HISTORY_KEEP", "MemoryStore", "SqliteStore", "Store"]

#: Messages per room that ``--history-db`` keeps, at most (plus 10 % before a prune).
HISTORY_KEEP: int = 10_000


class Store(Protocol):
    """Persistence used by :class:`hub.rooms.Hub`."""

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        """Return the room's latest ``seq`` and up to ``limit`` last messages, oldest first."""
        ...

    def append(self, message: ChatMessage) -> ChatMessage | None:
        """Durably record ``message``; raise if that is impossible.

        If the store already holds a message from the same user with the same
        ``id`` in that room, record nothing and return that earlier message.
        """
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[ChatMessage], bool]:
        """Return up to ``limit`` newest kept messages with ``seq < before``, oldest first.

        ``before`` None means from the newest. The flag is True when nothing
        older than the returned messages is kept.
        """
        ...

    def topic(self, room: str) -> Topic | None:
        """Return the room's topic as last set, or None."""
        ...

    def set_topic(self, topic: Topic) -> None:
        """Durably record ``topic`` as its room's topic."""
        ...


class MemoryStore:
    """No persistence: rooms live in the hub's memory only, ``keep`` messages each."""

    def __init__(self, keep: int = HISTORY_KEEP) -> None:
        self.keep = keep
        self._messages: dict[str, deque[ChatMessage]] = {}
        self._topics: dict[str, Topic] = {}

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        return 0, []

    def append(self, message: ChatMessage) -> ChatMessage | None:
        kept = self._messages.get(message.room)
        if kept is None:
            kept = self._messages[message.room] = deque(maxlen=self.keep)
        kept.append(message)
        return None

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[ChatMessage], bool]:
        kept = self._messages.get(room)
        if not kept:
            return [], True
        # A room's seq values are contiguous, so a seq gives its index.
        end = len(kept) if before is None else max(0, min(len(kept), before - kept[0].seq))
        start = max(0, end - limit)
        return list(itertools.islice(kept, start, end)), start == 0

    def topic(self, room: str) -> Topic | None:
        return self._topics.get(room)

    def set_topic(self, topic: Topic) -> None:
        self._topics[topic.room] = topic

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT,
    confidence REAL,
    ts REAL NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_flags (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (
    room TEXT PRIMARY KEY,
    topic TEXT,
    user TEXT NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
"""
# message_flags holds a row only for a flagged message. Bit 0: a /me action;
# bit 1: the emotion was picked by hand. In a table of its own, so that the
# messages table keeps its columns: a hub from before the flags (or a tool
# that writes rows) still reads and writes the file.
_ACTION, _PICKED = 1, 2
_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_sender ON messages (room, user, id)"
# Files from hubs before the index could hold a resend twice (beyond the dedup
# window). Keep the latest copy: deleting it could lower the room's seq, and a
# seq must never be given to a second message.
_DROP_EARLIER_COPIES = """
DELETE FROM messages WHERE EXISTS (
    SELECT 1 FROM messages AS later WHERE later.room = messages.room
    AND later.user = messages.user AND later.id = messages.id AND later.seq > messages.seq
)
"""

_SELECT = (
    "SELECT m.seq, m.id, m.user, m.text, m.label, m.confidence, m.ts, COALESCE(f.flags, 0)"
    " FROM messages AS m LEFT JOIN message_flags AS f ON f.room = m.room AND f.seq = m.seq"
)


class SqliteStore:
    """Messages in one SQLite file; ``seq`` is the room's highest stored ``seq``.

    At most ``keep`` messages per room stay, pruned in batches of ``keep // 10``.
    """

    def __init__(self, path: str | Path, keep: int = HISTORY_KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(path)
        self.keep = keep
        self.slack = max(1, keep // 10)
        self._oldest: dict[str, int] = {}  # room -> lowest stored seq, once looked up
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        try:
            self.db.execute(_INDEX)
        except sqlite3.IntegrityError:
            self.db.execute(_DROP_EARLIER_COPIES)
            self.db.execute(_INDEX)

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        rows = self.db.execute(
            f"{_SELECT} WHERE m.room = ? ORDER BY m.seq DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        messages = [_message(room, row) for row in reversed(rows)]
        return (messages[-1].seq if messages else 0), messages

    def append(self, message: ChatMessage) -> ChatMessage | None:
        emotion = message.emotion
        flags = _flags(message)
        try:
            if flags:  # both rows or neither
                self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.room,
                    message.seq,
                    message.id,
                    message.user,
                    message.text,
                    None if emotion is None else emotion.label,
                    None if emotion is None else emotion.confidence,
                    message.ts,
                ),
            )  # autocommit (or the COMMIT below): in the WAL when append returns
            if flags:
                self.db.execute(
                    "INSERT OR REPLACE INTO message_flags VALUES (?, ?, ?)",
                    (message.room, message.seq, flags),
                )
                self.db.execute("COMMIT")
        except Exception as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")  # or every later append would fail too
            if not isinstance(exc, sqlite3.IntegrityError):
                raise
            earlier = self.find(message.room, message.user, message.id)
            if earlier is None:
                raise  # not a resend: (room, seq) taken, which the core never does
            return earlier
        self._prune(message.room, message.seq)
        return None

    def find(self, room: str, user: str, id: str) -> ChatMessage | None:
        """Return the kept message ``user`` sent to ``room`` with ``id``, if any."""
        row = self.db.execute(
            f"{_SELECT} WHERE m.room = ? AND m.user = ? AND m.id = ?",
            (room, user, id),
        ).fetchone()
        return None if row is None else _message(room, row)

    def page(self, room: str, before: int | None, limit: int) -> tuple[list[ChatMessage], bool]:
        rows = self.db.execute(
            f"{_SELECT} WHERE m.room = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?",
            (room, 2**63 - 1 if before is None else before, limit),
        ).fetchall()
        if not rows:
            return [], True
        messages = [_message(room, row) for row in reversed(rows)]
        oldest = self.oldest(room)
        return messages, oldest is None or messages[0].seq <= oldest

    def topic(self, room: str) -> Topic | None:
        row = self.db.execute(
            "SELECT topic, user, ts FROM topics WHERE room = ?", (room,)
        ).fetchone()
        return None if row is None else Topic(room, row[0], row[1], row[2])

    def set_topic(self, topic: Topic) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO topics VALUES (?, ?, ?, ?)",
            (topic.room, topic.topic, topic.user, topic.ts),
        )

    def oldest(self, room: str) -> int | None:
        """Return the lowest ``seq`` kept for ``room``, or None if it has none."""
        (seq,) = self.db.execute("SELECT MIN(seq) FROM messages WHERE room = ?", (room,)).fetchone()
        return seq

    def _prune(self, room: str, seq: int) -> None:
        """Delete the room's oldest messages once it holds ``keep + slack`` of them.

        A room's ``seq`` values are contiguous, so ``seq - oldest + 1`` counts its rows.
        """
        oldest = self._oldest.get(room)
        if oldest is None:
            oldest = self._oldest[room] = self.oldest(room) or seq
        if seq - oldest + 1 <= self.keep + self.slack:
            return
        for table in ("messages", "message_flags"):
            self.db.execute(
                f"DELETE FROM {table} WHERE room = ? AND seq <= ?", (room, seq - self.keep)
            )
        self._oldest[room] = seq - self.keep + 1

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()


def _message(room: str, row: tuple[Any, ...]) -> ChatMessage:
    seq, id, user, text, label, confidence, ts, flags = row
    emotion = None if label is None else Emotion(label, confidence, bool(flags & _PICKED))
    return ChatMessage(
        room=room,
        seq=seq,
        id=id,
        user=user,
        text=text,
        emotion=emotion,
        ts=ts,
        action=bool(flags & _ACTION),
    )


def _flags(message: ChatMessage) -> int:
    picked = message.emotion is not None and message.emotion.picked
    return (_ACTION if message.action else 0) | (_PICKED if picked else 0)
