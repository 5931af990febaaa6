"""The message log: a virtual view over a bounded scrollback, drawn a visible row at a time.

One :class:`MessageLog` holds a room's rows (messages, notices, date lines) as
plain data; only the rows on screen are rendered (:meth:`MessageLog.render_line`,
the Line API that Toolong uses for millions of lines), and those are cached.
Arrivals update the data at once (so :meth:`~MessageLog.entry` sees them) and
are laid out in one batch at most once per frame. The scrollback keeps the
newest ``scrollback`` rows; older ones are dropped from the top.

Every string shown comes from the wire and goes through :mod:`fer_tui.inert`.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import ClassVar

from rich.cells import cell_len, get_character_cell_size
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from fer_tui.emotions import emoji_for
from fer_tui.inert import append_inert
from fer_tui.widgets.nick import nick_style
from hub.protocol import Emotion

#: Names are padded to this width so the emotion column lines up.
USER_WIDTH = 8

#: Default number of rows (messages, notices, date lines) a log keeps.
DEFAULT_SCROLLBACK = 100_000

#: Arrivals are laid out at most this often (seconds): once per frame at 60 fps.
FLUSH_INTERVAL = 1 / 60

#: Further lines of a wrapped message start under the name, past the time.
HANGING_INDENT = 10

#: How many rendered rows are kept (the screen shows a few dozen).
_RENDER_CACHE_ROWS = 512


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What a message row shows. ``pending``: sent by us, not yet back from the hub.

    ``action``: a ``/me`` message, shown as ``* ada waves``; ``mention``: it names
    the reader (the row is highlighted); ``picked``: the sender chose the label by
    hand (shown with ``✋``); ``direct``: a direct message (shown with ``✉``).
    """

    id: str
    user: str
    text: str
    emotion: Emotion | None
    ts: float
    own: bool = False
    pending: bool = False
    untagged_reason: str | None = None
    action: bool = False
    mention: bool = False
    picked: bool = False
    direct: bool = False


def day_of(ts: float) -> str:
    """The local date of ``ts`` as shown on a date line."""
    return time.strftime("%A %Y-%m-%d", time.localtime(ts))


def format_emotion(line: Text, entry: LogEntry) -> None:
    if entry.emotion is None:
        reason = f" ({entry.untagged_reason})" if entry.untagged_reason else ""
        append_inert(line, f"{emoji_for(None)} untagged{reason}", "dim italic")
        return
    append_inert(line, f"{emoji_for(entry.emotion.label)} {entry.emotion.label} ", "bold")
    line.append(f"{entry.emotion.confidence:.0%}", style="dim")
    if entry.picked:
        line.append(" ✋", style="bold")


def format_entry(entry: LogEntry) -> Text:
    """Render ``entry`` as ``time  user  emoji label conf  text`` (or ``time  * user text …``).

    Every wire string goes through :func:`~fer_tui.inert.append_inert`: the
    result holds no control character but ``\\n`` in the text.
    """
    line = Text(end="")
    line.append(time.strftime("%H:%M:%S", time.localtime(entry.ts)), style="dim")
    line.append("  ")
    if entry.action:
        if entry.direct:
            line.append("✉ ", style="bold magenta")
        line.append("* ", style="bold")
        append_inert(line, entry.user, nick_style(entry.user))
        line.append(" ")
        append_inert(line, entry.text, Style(italic=True), multiline=True)
        line.append("  ")
        format_emotion(line, entry)
    else:
        name_start = len(line)
        if entry.direct:
            line.append("✉ ", style="bold magenta")
        append_inert(line, entry.user, nick_style(entry.user))
        line.append(" " * max(0, USER_WIDTH - cell_len(line.plain[name_start:])))
        line.append("  ")
        format_emotion(line, entry)
        line.append("  ")
        append_inert(line, entry.text, multiline=True)
    if entry.pending:
        line.append("  ⧗ pending", style="yellow italic")
    return line


def format_notice(text: str) -> Text:
    """A line from the client itself; its text may quote wire strings (names, rooms)."""
    return append_inert(Text("— ", end=""), text, multiline=True)


class _Row:
    """One item of the log: a message, a notice or a date line, and where it sits.

    ``start`` is the item's first row in an absolute numbering that only grows
    downwards: rows dropped from the top and rows prepended never renumber the
    others (prepended ones get smaller, possibly negative, numbers).
    """

    __slots__ = ("cells", "content", "height", "kind", "start")

    def __init__(self, kind: str, content: LogEntry | str) -> None:
        self.kind = kind  # "entry", "notice" or "day"
        self.content = content
        self.start = 0
        self.height = 1
        self.cells: int | None = None  # width on one line; None: not measured or multi-line

    @property
    def entry(self) -> LogEntry:
        assert isinstance(self.content, LogEntry)
        return self.content

    def haystack(self) -> str:
        """What a search looks in."""
        if isinstance(self.content, LogEntry):
            return f"{self.content.user} {self.content.text}"
        return self.content


class MessageLog(ScrollView, can_focus=False):
    """A room's messages in arrival order, following the newest unless the reader scrolled up.

    API (stable; the app and the room views use it): :meth:`add_entry`,
    :meth:`add_notice`, :meth:`prepend_entries`, :meth:`entry`, :attr:`entries`,
    :attr:`notices`, :meth:`search`, :meth:`next_match`, :meth:`previous_match`,
    :meth:`clear_search`, :meth:`flush`; it posts :class:`ReachedTop`.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "message-log--notice",
        "message-log--day",
        "message-log--pending",
        "message-log--mention",
        "message-log--match",
        "message-log--current-match",
    }

    DEFAULT_CSS = """
    MessageLog {
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    MessageLog > .message-log--notice { color: $text-muted; text-style: italic; }
    MessageLog > .message-log--day { color: $text-accent; text-style: bold; }
    MessageLog > .message-log--pending { color: $text-muted; }
    MessageLog > .message-log--mention { background: $warning 25%; }
    MessageLog > .message-log--match { background: $accent 40%; }
    MessageLog > .message-log--current-match { background: $accent; color: $text; }
    """

    class ReachedTop(Message):
        """The reader scrolled to the top: time to fetch older history.

        Posted once per arrival at the top; again only after
        :meth:`~MessageLog.prepend_entries` was called or the reader scrolled away.
        """

        def __init__(self, log: MessageLog, oldest: LogEntry | None) -> None:
            super().__init__()
            self.log = log
            #: The oldest message held (ask the hub for what came before it).
            self.oldest = oldest

        @property
        def control(self) -> MessageLog:
            return self.log

    def __init__(self, scrollback: int = DEFAULT_SCROLLBACK, **kwargs: object) -> None:
        # ignore: kwargs are Textual's widget options (id, classes, ...), passed on unchanged.
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if scrollback < 1:
            raise ValueError(f"scrollback must be at least 1, got {scrollback}")
        self.scrollback = scrollback
        self._rows: list[_Row] = []
        self._by_id: dict[str, _Row] = {}
        self._laid = 0  # rows[:laid] have start/height for the current width
        self._width = 0  # the width they were laid out for
        self._top = 0  # start of rows[0]
        self._bottom = 0  # end of rows[laid - 1]
        self._last_day: str | None = None
        self._flush_timer: Timer | None = None
        self._cache: OrderedDict[_Row, list[Strip]] = OrderedDict()
        self._base: Style | None = None
        self._query: re.Pattern[str] | None = None
        self._matches: list[_Row] = []
        self._current: int = -1
        self._top_armed = True

    # --- adding ---------------------------------------------------------------

    def add_entry(self, entry: LogEntry) -> None:
        """Show ``entry``; if a row with its id exists (our pending copy), update it instead."""
        row = self._by_id.get(entry.id)
        if row is not None:
            old = row.entry
            row.content = replace(
                entry, untagged_reason=entry.untagged_reason or old.untagged_reason
            )
            self._changed(row)
            return
        day = day_of(entry.ts)
        if day != self._last_day:
            self._last_day = day
            self._rows.append(_Row("day", day))
        row = _Row("entry", entry)
        self._by_id[entry.id] = row
        self._rows.append(row)
        self._arrived(row)

    def add_notice(self, text: str) -> None:
        """A line from the client itself (hub started, reconnecting, ...)."""
        row = _Row("notice", text)
        self._rows.append(row)
        self._arrived(row)

    def prepend_entries(self, entries: Sequence[LogEntry]) -> int:
        """Put older messages (oldest first) above the ones shown; return how many were added.

        Ids already shown are skipped. The scrollback bound holds: when it is
        full, only the newest of ``entries`` that fit are added (none when it
        is full already). The view stays on the rows the reader was looking at.
        """
        self._top_armed = True
        rows = _rows_for([e for e in entries if e.id not in self._by_id])
        if not rows:
            return 0
        first = self._rows[0] if self._rows else None
        repeated_day = (
            first is not None and first.kind == "day" and first.content == _last_day(rows)
        )
        room = self.scrollback - len(self._rows) + (1 if repeated_day else 0)
        if len(rows) > room:
            rows = _trim_front(rows, room)
        if not rows:
            return 0
        before = self._top
        if repeated_day:
            self._remove_top(1)
        for row in rows:
            if row.kind == "entry":
                self._by_id[row.entry.id] = row
        if self._last_day is None:
            self._last_day = _last_day(rows)
        self._rows[0:0] = rows
        if self._width:  # laid out already: place the new rows above the old top
            self._laid += len(rows)
            start = self._top
            for row in reversed(rows):
                row.height = self._measure(row, self._width)
                start -= row.height
                row.start = start
            self._top = start
        if self._query is not None:
            matched = [r for r in rows if self._query.search(r.haystack())]
            self._matches[0:0] = matched
            if self._current >= 0:
                self._current += len(matched)
        self._update_virtual_size()
        if self._width and before != self._top:
            self.scroll_to(
                y=self.scroll_y + before - self._top, animate=False, immediate=True, force=True
            )
        self.refresh()
        return sum(1 for r in rows if r.kind == "entry")

    # --- reading --------------------------------------------------------------

    def entry(self, message_id: str) -> LogEntry | None:
        row = self._by_id.get(message_id)
        return None if row is None else row.entry

    @property
    def entries(self) -> list[LogEntry]:
        """The messages held, top to bottom."""
        return [row.entry for row in self._rows if row.kind == "entry"]

    @property
    def notices(self) -> list[str]:
        """The notices held (as given, before :mod:`~fer_tui.inert` made them safe)."""
        return [str(row.content) for row in self._rows if row.kind == "notice"]

    @property
    def row_count(self) -> int:
        """Rows held: messages, notices and date lines (bounded by ``scrollback``)."""
        return len(self._rows)

    # --- layout ---------------------------------------------------------------

    def _arrived(self, row: _Row) -> None:
        if self._query is not None and self._query.search(row.haystack()):
            self._matches.append(row)
        if self._flush_timer is None and self.is_mounted:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Lay out the rows that arrived since the last frame (done by a timer; tests call it)."""
        self._flush_timer = None
        width = self._content_width()
        if width <= 0:
            return
        follow = self.scroll_y >= self.max_scroll_y
        if width != self._width:
            self._relayout(width)
        dropped = self._evict()
        start = self._bottom
        for row in self._rows[self._laid :]:
            row.start = start
            row.height = self._measure(row, width)
            start += row.height
        self._laid = len(self._rows)
        self._bottom = start
        self._update_virtual_size()
        if follow:
            self.scroll_end(animate=False, immediate=True, force=True, x_axis=False)
        elif dropped:
            self.scroll_to(
                y=max(0, self.scroll_y - dropped), animate=False, immediate=True, force=True
            )
        self.refresh()

    def _content_width(self) -> int:
        return self.scrollable_content_region.width if self.is_mounted else 0

    def _relayout(self, width: int) -> None:
        self._width = width
        self._cache.clear()
        start = 0
        for row in self._rows[: self._laid]:
            row.start = start
            row.height = self._measure(row, width)
            start += row.height
        self._top = 0
        self._bottom = start

    def _evict(self) -> int:
        """Drop rows over the bound from the top; return how many screen rows went."""
        excess = len(self._rows) - self.scrollback
        if excess <= 0:
            return 0
        before = self._top
        self._remove_top(excess)
        if self.scrollback > 1 and self._rows and self._rows[0].kind == "entry":
            # The new top message lost its date line: it gives its place to one.
            self._remove_top(1)
            first = self._rows[0] if self._rows else None
            if first is not None and first.kind == "entry":
                day = _Row("day", day_of(first.entry.ts))
                self._rows.insert(0, day)
                if self._laid:
                    day.start = first.start - 1
                    self._laid += 1
                    self._top = day.start
        return max(0, self._top - before)

    def _remove_top(self, count: int) -> None:
        gone = self._rows[:count]
        del self._rows[:count]
        laid_gone = min(count, self._laid)
        self._laid -= laid_gone
        for row in gone:
            if row.kind == "entry":
                self._by_id.pop(row.entry.id, None)
            self._cache.pop(row, None)
        if self._matches:
            gone_set = set(gone)
            kept = [r for r in self._matches if r not in gone_set]
            self._current = max(-1, self._current - (len(self._matches) - len(kept)))
            self._matches = kept
        if self._rows and self._laid:
            self._top = self._rows[0].start
        else:
            self._top = self._bottom

    def _changed(self, row: _Row) -> None:
        """``row``'s content changed (an ack, an edit): re-measure and shift the rows below."""
        self._cache.pop(row, None)
        row.cells = None
        if not self._width:
            return
        index = self._index_of(row)
        if index is None or index >= self._laid:
            self.refresh()
            return
        delta = self._measure(row, self._width) - row.height
        row.height += delta
        if delta:
            for below in self._rows[index + 1 : self._laid]:
                below.start += delta
            self._bottom += delta
            self._update_virtual_size()
        self.refresh()

    def _index_of(self, row: _Row) -> int | None:
        if self._laid == 0 or row.start < self._top:
            return None
        index = bisect_right(self._rows, row.start, hi=self._laid, key=attrgetter("start")) - 1
        return index if 0 <= index < self._laid and self._rows[index] is row else None

    def _update_virtual_size(self) -> None:
        size = Size(self._width, self._bottom - self._top)
        if size == self.virtual_size:
            return
        # Not the reactive's setter: it would lay out the whole screen again on every
        # batch (the log's own size never depends on its rows); only the scrollbars change.
        self.set_reactive(ScrollView.virtual_size, size)
        self._scroll_update(size)
        self.refresh()

    def _measure(self, row: _Row, width: int) -> int:
        """Screen rows ``row`` takes at ``width``; a short one-line row is not rendered for it."""
        if row.cells is None:
            plain = self._text_of(row).plain
            row.cells = -1 if "\n" in plain else cell_len(plain)
        if 0 <= row.cells <= width:
            return 1
        indent = HANGING_INDENT if row.kind == "entry" else 0
        return len(wrap_spans(self._text_of(row).plain, width, indent))

    # --- rendering ------------------------------------------------------------

    def _text_of(self, row: _Row) -> Text:
        if row.kind == "day":
            text = Text(f"── {row.content} ──", end="")
            text.stylize(self.get_component_rich_style("message-log--day", partial=True))
            return text
        if row.kind == "notice":
            text = format_notice(str(row.content))
            text.stylize(self.get_component_rich_style("message-log--notice", partial=True))
            return text
        entry = row.entry
        text = format_entry(entry)
        if entry.pending:
            text.stylize_before(self.get_component_rich_style("message-log--pending", partial=True))
        if entry.mention:
            text.stylize_before(self.get_component_rich_style("message-log--mention", partial=True))
        return text

    def _strips(self, row: _Row, width: int) -> list[Strip]:
        strips = self._cache.get(row)
        if strips is not None:
            self._cache.move_to_end(row)
            return strips
        text = self._text_of(row)
        if self._query is not None and row in self._matches:
            self._highlight(text, row)
        strips = self._wrap(text, width, hanging=row.kind == "entry")
        if row.kind == "entry" and row.entry.mention:
            mention = self.get_component_rich_style("message-log--mention", partial=True)
            strips = [strip.extend_cell_length(width, mention) for strip in strips]
        # Finished here, once per row: render_line runs for every visible line of every frame.
        base = self._base_style()
        strips = [strip.apply_style(base).crop_extend(0, width, base) for strip in strips]
        self._cache[row] = strips
        if len(self._cache) > _RENDER_CACHE_ROWS:
            self._cache.popitem(last=False)
        return strips

    def _wrap(self, text: Text, width: int, hanging: bool) -> list[Strip]:
        """``text`` wrapped to ``width``; a message's further lines start under its name."""
        console = self.app.console
        indent = HANGING_INDENT if hanging else 0
        strips = []
        for number, (start, end) in enumerate(wrap_spans(text.plain, width, indent)):
            line = text[start:end]
            line.rstrip()
            if number and indent:
                line = Text.assemble(" " * indent, line)
            strips.append(Strip(list(line.render(console)), line.cell_len))
        return strips or [Strip([])]

    def _highlight(self, text: Text, row: _Row) -> None:
        assert self._query is not None
        current = self._current >= 0 and self._matches[self._current] is row
        style = self.get_component_rich_style(
            "message-log--current-match" if current else "message-log--match", partial=True
        )
        for match in self._query.finditer(text.plain):
            text.stylize(style, match.start(), match.end())

    def _base_style(self) -> Style:
        if self._base is None:
            self._base = self.rich_style
        return self._base

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self._base_style()
        target = self._top + scroll_y + y
        if self._laid == 0 or not self._top <= target < self._bottom:
            return Strip.blank(width, base)
        index = bisect_right(self._rows, target, hi=self._laid, key=attrgetter("start")) - 1
        row = self._rows[index]
        strips = self._strips(row, self._width)
        offset = target - row.start
        strip = strips[offset] if offset < len(strips) else Strip.blank(self._width, base)
        if scroll_x == 0 and width == self._width:
            return strip
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def on_resize(self) -> None:
        if self._content_width() != self._width:
            self.flush()

    def on_mount(self) -> None:
        self.call_after_refresh(self.flush)

    def on_show(self) -> None:
        # Rows that arrived while hidden (another buffer shown) had no width: lay them out.
        self.flush()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._cache.clear()

    # --- the top ----------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > 0:
            self._top_armed = True
        elif old_value > 0:
            self._reached_top()

    def on_mouse_scroll_up(self) -> None:
        # Runs besides Widget's own handler: scrolling up at the top asks again.
        if self.scroll_y == 0:
            self._reached_top()

    def _reached_top(self) -> None:
        if not self._top_armed:
            return
        self._top_armed = False
        oldest = next((row.entry for row in self._rows if row.kind == "entry"), None)
        self.post_message(self.ReachedTop(self, oldest))

    # --- search ---------------------------------------------------------------

    def search(self, query: str) -> int:
        """Highlight every row holding ``query`` (case-insensitive); go to the newest one.

        Returns the number of matching rows. An empty query clears the search.
        """
        self._cache.clear()
        if not query:
            self.clear_search()
            return 0
        self._query = re.compile(re.escape(query), re.IGNORECASE)
        self._matches = [row for row in self._rows if self._query.search(row.haystack())]
        self._current = len(self._matches) - 1
        self._show_current()
        return len(self._matches)

    def next_match(self) -> int:
        """Go to the next (newer) match, wrapping around; return its 1-based number (0: none)."""
        return self._step(+1)

    def previous_match(self) -> int:
        """Go to the previous (older) match, wrapping around; return its 1-based number."""
        return self._step(-1)

    @property
    def match_count(self) -> int:
        return len(self._matches)

    @property
    def current_match(self) -> LogEntry | str | None:
        """The row the search is on (an entry or a notice's text)."""
        if 0 <= self._current < len(self._matches):
            return self._matches[self._current].content
        return None

    def clear_search(self) -> None:
        self._query = None
        self._matches = []
        self._current = -1
        self._cache.clear()
        self.refresh()

    def _step(self, direction: int) -> int:
        if not self._matches:
            return 0
        self._current = (self._current + direction) % len(self._matches)
        self._cache.clear()
        self._show_current()
        return self._current + 1

    def _show_current(self) -> None:
        self.flush()
        if 0 <= self._current < len(self._matches):
            row = self._matches[self._current]
            if self._laid and row.start >= self._top:
                y = row.start - self._top
                if not self.scroll_y <= y < self.scroll_y + self.scrollable_content_region.height:
                    self.scroll_to(
                        y=max(0, y - self.scrollable_content_region.height // 2),
                        animate=False,
                        immediate=True,
                    )
        self.refresh()


def wrap_spans(plain: str, width: int, indent: int = 0) -> list[tuple[int, int]]:
    """Where ``plain`` breaks into screen lines: ``(start, end)`` of each.

    Words wrap at spaces, a word longer than a line is cut, ``\n`` starts a
    new line; lines after the first are ``indent`` cells narrower (a hanging
    indent). Pure string work, so measuring a row never renders it.
    """
    spans: list[tuple[int, int]] = []
    position = 0
    for paragraph in plain.split("\n"):
        start, stop = position, position + len(paragraph)
        position = stop + 1
        if start == stop:
            spans.append((start, stop))
            continue
        while start < stop:
            room = max(1, width - (indent if spans else 0))
            if cell_len(plain[start:stop]) <= room:
                spans.append((start, stop))
                break
            cells, index, space_break = 0, start, 0
            while index < stop:
                cells += get_character_cell_size(plain[index])
                if cells > room:
                    if plain[index] == " ":  # a space may hang past the edge: break on it
                        space_break = index + 1
                    break
                index += 1
                if plain[index - 1] == " ":
                    space_break = index
            end = space_break if space_break > start else max(index, start + 1)
            spans.append((start, end))
            start = end
            while start < stop and plain[start] == " ":
                start += 1
    return spans


def _rows_for(entries: Sequence[LogEntry]) -> list[_Row]:
    """Rows for ``entries`` (oldest first), a date line before each new date."""
    rows: list[_Row] = []
    day: str | None = None
    for entry in entries:
        if day_of(entry.ts) != day:
            day = day_of(entry.ts)
            rows.append(_Row("day", day))
        rows.append(_Row("entry", entry))
    return rows


def _last_day(rows: Sequence[_Row]) -> str | None:
    return next((str(row.content) for row in reversed(rows) if row.kind == "day"), None)


def _trim_front(rows: list[_Row], keep: int) -> list[_Row]:
    """The newest ``keep`` of ``rows``, still starting with a date line."""
    if keep <= 0:
        return []
    rows = rows[len(rows) - keep :]
    if rows[0].kind == "entry":
        # Its place goes to the date line of what follows (or it goes, if a new date follows).
        rows = rows[1:]
        if rows and rows[0].kind == "entry":
            rows.insert(0, _Row("day", day_of(rows[0].entry.ts)))
    return rows
