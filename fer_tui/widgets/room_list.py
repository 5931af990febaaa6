"""The room list: every buffer with its Alt+N number, unread count and mention mark."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.events import Click
from textual.message import Message
from textual.widgets import Static

from fer_tui.buffers import Buffer, Buffers
from fer_tui.inert import append_inert
from fer_tui.widgets.nick import nick_style

#: Buffers that get an Alt+N key (Alt+1 … Alt+9).
NUMBERED = 9


def format_buffer(index: int, buffer: Buffer, current: bool) -> Text:
    """``1 lobby  3 @`` – number, title, unread count, ``@`` when you were mentioned."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{index + 1} " if index < NUMBERED else "  ", style="dim")
    style = Style(bold=current or bool(buffer.unread), reverse=current)
    if buffer.kind == "highlights":
        style += Style(italic=True)
    elif buffer.kind == "direct" and buffer.peer is not None:
        style = nick_style(buffer.peer) + Style(reverse=current)
    append_inert(line, buffer.title, style)  # room and peer names come from the wire
    if buffer.unread:
        line.append(f" {buffer.unread}", style="cyan")
    if buffer.mentions:
        line.append(" @", style="bold red")
    return line


def format_buffers(buffers: Buffers) -> Text:
    lines = [format_buffer(i, b, b.key == buffers.current_key) for i, b in enumerate(buffers)]
    text = Text("\n").join(lines)
    text.no_wrap, text.overflow = True, "ellipsis"  # join() keeps neither
    return text


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
