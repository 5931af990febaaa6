"""Where the hub keeps messages: in memory (default) or in SQLite (``--history-db``).

The core (:mod:`hub.rooms`) calls :meth:`Store.append` for each new message
before acknowledging it, and :meth:`Store.load` when a room is first used, to
restore its ``seq``, history and dedup index after a restart.

:class:`SqliteStore` commits every message in WAL mode with
``synchronous=NORMAL``: a committed message survives the hub process being
killed; only a power cut can lose the last commits. Connection-level
durability against power loss would cost an fsync per message.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

from .protocol import ChatMessage, Emotion

__all__ = ["MemoryStore", "SqliteStore", "Store"]


class Store(Protocol):
    """Persistence used by :class:`hub.rooms.Hub`."""

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        """Return the room's latest ``seq`` and up to ``limit`` last messages, oldest first."""
        ...

    def append(self, message: ChatMessage) -> None:
        """Durably record ``message``; raise if that is impossible."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class MemoryStore:
    """No persistence: rooms live in the hub's memory only."""

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        return 0, []

    def append(self, message: ChatMessage) -> None:
        pass

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
"""


class SqliteStore:
    """Messages in one SQLite file; ``seq`` is the room's highest stored ``seq``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def load(self, room: str, limit: int) -> tuple[int, list[ChatMessage]]:
        rows = self.db.execute(
            "SELECT seq, id, user, text, label, confidence, ts FROM messages"
            " WHERE room = ? ORDER BY seq DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        messages = [
            ChatMessage(
                room=room,
                seq=seq,
                id=id,
                user=user,
                text=text,
                emotion=None if label is None else Emotion(label, confidence),
                ts=ts,
            )
            for seq, id, user, text, label, confidence, ts in reversed(rows)
        ]
        return (messages[-1].seq if messages else 0), messages

    def append(self, message: ChatMessage) -> None:
        emotion = message.emotion
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
        )  # autocommit: the row is in the WAL when this returns

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
