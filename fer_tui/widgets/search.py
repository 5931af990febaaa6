"""Search in a log's scrollback: an input bar below the log (Ctrl+F opens it)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Input

from fer_tui.widgets.message_log import MessageLog


class SearchBar(Input):
    """Typing searches the target log as you type; Enter/F3 next, Shift+F3 previous, Esc closes.

    Hidden until :meth:`open` is called with the log to search (the room's log
    that has focus on screen); closing clears the highlight and gives the focus
    back to whatever had it.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f3", "next_match", "Next", show=False),
        Binding("shift+f3", "previous_match", "Previous", show=False),
        Binding("escape", "close", "Close search", show=False),
    ]

    DEFAULT_CSS = """
    SearchBar {
        display: none;
        border: tall $warning;
    }
    SearchBar.-open { display: block; }
    """

    def __init__(self, **kwargs: object) -> None:
        placeholder = "Search the log (Enter/F3 next, Shift+F3 previous, Esc closes)"
        super().__init__(placeholder=placeholder, **kwargs)  # type: ignore[arg-type]
        self.target: MessageLog | None = None
        self._return_focus: Widget | None = None

    def open(self, log: MessageLog) -> None:
        """Show the bar, searching ``log``; the current text (if any) is searched again."""
        if self.target is not None and self.target is not log:
            self.target.clear_search()
        self.target = log
        if not self.has_class("-open"):
            self._return_focus = self.screen.focused
        self.add_class("-open")
        self.focus()
        self._search(self.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the screen's own Enter handler sends messages: not this text
        self.action_next_match()

    def action_next_match(self) -> None:
        if self.target is not None:
            self._show(self.target.next_match())

    def action_previous_match(self) -> None:
        if self.target is not None:
            self._show(self.target.previous_match())

    def action_close(self) -> None:
        if self.target is not None:
            self.target.clear_search()
        self.remove_class("-open")
        self.border_subtitle = ""
        if self._return_focus is not None and self._return_focus.is_attached:
            self._return_focus.focus()
        self._return_focus = None

    def _search(self, query: str) -> None:
        if self.target is None:
            return
        count = self.target.search(query)  # starts on the newest match: number = count
        self._show(count, count)

    def _show(self, number: int, count: int | None = None) -> None:
        assert self.target is not None
        total = self.target.match_count if count is None else count
        if not self.value:
            self.border_subtitle = ""
        elif total == 0:
            self.border_subtitle = "no match"
        else:
            self.border_subtitle = f"{number}/{total}"
