"""The room list: every buffer with its Alt+N number, unread count and mention mark."""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.message import Message
from textual.widgets import Static

from fer_tui.buffers import Buffer, Buffers

#: Buffers that get an Alt+N key (Alt+1 … Alt+9).
NUMBERED = 9


def format_buffer(index: int, buffer: Buffer, current: bool) -> Text:
    """``1 lobby  3 @`` – number, title, unread count, ``@`` when you were mentioned."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{index + 1} " if index < NUMBERED else "  ", style="dim")
    style = "bold reverse" if current else "bold" if buffer.unread else ""
    if buffer.kind == "highlights":
        style += " italic"
    line.append(buffer.title, style=style)
    if buffer.unread:
        line.append(f" {buffer.unread}", style="cyan")
    if buffer.mentions:
        line.append(" @", style="bold red")
    return line


def format_buffers(buffers: Buffers) -> Text:
    lines = [format_buffer(i, b, b.key == buffers.current_key) for i, b in enumerate(buffers)]
    return Text("\n").join(lines)


class RoomList(Static):
    """Shows :class:`~fer_tui.buffers.Buffers`; a click posts :class:`RoomList.Picked`."""

    class Picked(Message):
        """The user clicked the ``index``-th buffer."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def show(self, buffers: Buffers) -> None:
        self.update(format_buffers(buffers))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.post_message(self.Picked(offset.y))
