"""Input history: Up and Down step through what was sent, keeping the unsent draft."""

from __future__ import annotations


class InputHistory:
    """Lines in the order they were sent; a cursor that Up/Down move."""

    def __init__(self, size: int = 500) -> None:
        self.size = size
        self._lines: list[str] = []
        self._index: int | None = None  # None: at the draft, past the newest line
        self._draft = ""

    def add(self, line: str) -> None:
        """Remember a sent line (a repeat of the newest is kept once) and reset the cursor."""
        if line and (not self._lines or self._lines[-1] != line):
            self._lines.append(line)
            del self._lines[: -self.size]
        self._index = None
        self._draft = ""

    def previous(self, current: str) -> str | None:
        """The line before the cursor (``current`` is kept as the draft), or ``None``."""
        if not self._lines or self._index == 0:
            return None
        if self._index is None:
            self._draft = current
            self._index = len(self._lines)
        self._index -= 1
        return self._lines[self._index]

    def next(self) -> str | None:
        """The line after the cursor, the draft past the newest, or ``None`` at the draft."""
        if self._index is None:
            return None
        self._index += 1
        if self._index == len(self._lines):
            self._index = None
            return self._draft
        return self._lines[self._index]
