"""The client's buffers: rooms, direct conversations and highlights, without any I/O.

A *buffer* is one entry of the room list with its own log. Rooms are joined on
their own hub connection; a direct conversation lives inside the room whose
connection carries it (``/msg`` is routed by that room's hub); the highlights
buffer collects every message that mentioned you. :class:`Buffers` keeps their
order, which one is shown, and the unread and mention counts of the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from fer_tui.moods import MoodTracker
from hub.protocol import Member

BufferKind = Literal["room", "direct", "highlights"]

#: Key of the one highlights buffer (NUL: no room's name, hence key, can hold it).
HIGHLIGHTS = "\x00highlights"


def direct_key(room: str, peer: str) -> str:
    """The key of the conversation with ``peer`` carried by ``room``."""
    return f"@{peer}\x00{room}"  # NUL: no room or user name can contain it


@dataclass(eq=False)
class Buffer:
    """One buffer's state (its log widget belongs to the screen)."""

    key: str
    kind: BufferKind
    room: str  # the hub room; for highlights ""
    peer: str | None = None
    unread: int = 0
    mentions: int = 0
    topic: str | None = None
    members: tuple[Member, ...] = ()
    moods: MoodTracker = field(default_factory=MoodTracker)
    #: The room connection's state and its detail, for the status line.
    state: str = "connecting"
    detail: str = ""
    #: Messages up to this seq came with the join (history, not live: no bell).
    live_after: int | None = None
    #: The oldest seq in the log: scrolling to the top asks for the page before it.
    oldest_seq: int | None = None
    #: The hub said it keeps nothing older than ``oldest_seq``: stop asking.
    history_complete: bool = False

    @property
    def title(self) -> str:
        if self.kind == "direct":
            return f"@{self.peer}"
        if self.kind == "highlights":
            return "highlights"
        return self.room


class Buffers:
    """Ordered buffers, one of them current; rooms first, in joining order."""

    def __init__(self) -> None:
        self._items: list[Buffer] = [Buffer(HIGHLIGHTS, "highlights", "")]
        self.current_key: str | None = None

    def __iter__(self) -> Iterator[Buffer]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Buffer | None:
        return next((b for b in self._items if b.key == key), None)

    @property
    def current(self) -> Buffer | None:
        return None if self.current_key is None else self.get(self.current_key)

    @property
    def highlights(self) -> Buffer:
        buffer = self.get(HIGHLIGHTS)
        assert buffer is not None
        return buffer

    def rooms(self) -> list[Buffer]:
        return [b for b in self._items if b.kind == "room"]

    def add_room(self, room: str) -> tuple[Buffer, bool]:
        """The room's buffer and whether it is new; new rooms go after the other rooms."""
        existing = self.get(room)
        if existing is not None:
            return existing, False
        buffer = Buffer(room, "room", room)
        rooms_end = max((i + 1 for i, b in enumerate(self._items) if b.kind == "room"), default=0)
        self._items.insert(rooms_end, buffer)
        return buffer, True

    def add_direct(self, room: str, peer: str) -> tuple[Buffer, bool]:
        """The conversation with ``peer`` in ``room``; new ones go before highlights."""
        key = direct_key(room, peer)
        existing = self.get(key)
        if existing is not None:
            return existing, False
        buffer = Buffer(key, "direct", room, peer)
        self._items.insert(len(self._items) - 1, buffer)
        return buffer, True

    def remove(self, key: str) -> list[Buffer]:
        """Remove a buffer (a room takes its direct conversations along); return them."""
        gone = [b for b in self._items if b.key == key and b.kind != "highlights"]
        if gone and gone[0].kind == "room":
            gone += [b for b in self._items if b.kind == "direct" and b.room == gone[0].room]
        if not gone:
            return []
        index = self._items.index(gone[0])
        self._items = [b for b in self._items if b not in gone]
        if self.current_key in {b.key for b in gone}:  # show the one before it
            self.current_key = self._items[max(0, index - 1)].key
        return gone

    def rename_peer(self, room: str, old: str, new: str) -> Buffer | None:
        """Follow a nick change in a direct conversation's key and title."""
        buffer = self.get(direct_key(room, old))
        if buffer is None or self.get(direct_key(room, new)) is not None:
            return None
        buffer.key, buffer.peer = direct_key(room, new), new
        if self.current_key == direct_key(room, old):
            self.current_key = buffer.key
        return buffer

    def select(self, key: str) -> Buffer | None:
        """Make ``key`` current and mark it read."""
        buffer = self.get(key)
        if buffer is not None:
            self.current_key = key
            buffer.unread = buffer.mentions = 0
        return buffer

    def select_index(self, index: int) -> Buffer | None:
        """Select the ``index``-th buffer (0-based), if there is one."""
        if 0 <= index < len(self._items):
            return self.select(self._items[index].key)
        return None

    def step(self, offset: int) -> Buffer | None:
        """Select the buffer ``offset`` places away, wrapping around."""
        keys = [b.key for b in self._items]
        here = keys.index(self.current_key) if self.current_key in keys else 0
        return self.select(keys[(here + offset) % len(keys)])

    def note_arrival(self, buffer: Buffer, mention: bool) -> None:
        """Count a new message in ``buffer`` unless it is the one being read."""
        if buffer.key == self.current_key:
            return
        buffer.unread += 1
        buffer.mentions += int(mention)
