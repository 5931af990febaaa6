"""Baseline for bench/log_bench.py: the message log as it was before the virtual log.

A verbatim copy of ``fer_tui/widgets/message_log.py`` at commit 366866d (one
``Static`` widget mounted per message, all kept), plus the styles it had in
``app.tcss`` and the few calls the app now makes (``scrollback``, ``flush``,
``notices``) as no-ops, so the same app can run with either log. Not shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from fer_tui.emotions import emoji_for
from hub.protocol import Emotion

#: Names are padded to this width so the emotion column lines up.
USER_WIDTH = 8


@dataclass(frozen=True)
class LogEntry:
    """What a row shows. ``pending``: sent by us, not yet back from the hub."""

    id: str
    user: str
    text: str
    emotion: Emotion | None
    ts: float
    own: bool = False
    pending: bool = False
    untagged_reason: str | None = None


def format_entry(entry: LogEntry) -> Text:
    """Render ``entry`` as ``time  user  emoji label conf  text``."""
    line = Text(no_wrap=False)
    line.append(time.strftime("%H:%M:%S", time.localtime(entry.ts)), style="dim")
    line.append("  ")
    line.append(entry.user.ljust(USER_WIDTH), style="bold " + ("green" if entry.own else "cyan"))
    line.append("  ")
    if entry.emotion is None:
        reason = f" ({entry.untagged_reason})" if entry.untagged_reason else ""
        line.append(f"{emoji_for(None)} untagged{reason}", style="dim italic")
    else:
        line.append(f"{emoji_for(entry.emotion.label)} {entry.emotion.label} ", style="bold")
        line.append(f"{entry.emotion.confidence:.0%}", style="dim")
    line.append("  ")
    line.append(entry.text)
    if entry.pending:
        line.append("  ⧗ pending", style="yellow italic")
    return line


class MessageRow(Static):
    """One message."""

    def __init__(self, entry: LogEntry) -> None:
        super().__init__(format_entry(entry), classes="message-row", markup=False)
        self.entry = entry
        self.set_class(entry.pending, "-pending")
        self.set_class(entry.own, "-own")

    def update_entry(self, entry: LogEntry) -> None:
        self.entry = entry
        self.set_class(entry.pending, "-pending")
        self.update(format_entry(entry))


class MessageLog(VerticalScroll):
    """Messages in arrival order, scrolled to the newest."""

    can_focus = False

    DEFAULT_CSS = """
    .message-row { width: 1fr; height: auto; }
    .message-row.-pending { color: $text-muted; }
    .notice { height: auto; color: $text-muted; }
    """

    def __init__(self, scrollback: int = 0, **kwargs: object) -> None:  # scrollback: unbounded
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rows: dict[str, MessageRow] = {}

    def flush(self) -> None:
        """The old log mounts at once: nothing to lay out later."""

    def add_entry(self, entry: LogEntry) -> None:
        """Show ``entry``; if a row with its id exists (our pending copy), update it instead."""
        row = self._rows.get(entry.id)
        if row is not None:
            merged = replace(
                entry, untagged_reason=entry.untagged_reason or row.entry.untagged_reason
            )
            row.update_entry(merged)
            return
        row = MessageRow(entry)
        self._rows[entry.id] = row
        self.mount(row)
        self.scroll_end(animate=False)

    def add_notice(self, text: str) -> None:
        """A line from the client itself (hub started, reconnecting, ...)."""
        self.mount(Static(Text(f"— {text}", style="dim italic"), classes="notice"))
        self.scroll_end(animate=False)

    def entry(self, message_id: str) -> LogEntry | None:
        row = self._rows.get(message_id)
        return None if row is None else row.entry

    @property
    def entries(self) -> list[LogEntry]:
        return [row.entry for row in self._rows.values()]
