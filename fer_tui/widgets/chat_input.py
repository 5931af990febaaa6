"""The message input: history on Up/Down, Tab completion, multi-line paste handed up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from fer_tui.commands import TabCompleter
from fer_tui.input_history import InputHistory

#: What Alt+1 … Alt+9 arrive as from a real terminal: Textual reads ESC+digit as the
#: character macOS's Option+digit types. The input lets these through to the
#: screen's room keys instead of inserting them.
ALT_DIGIT_KEYS = (
    "inverted_exclamation_mark",
    "trade_mark_sign",
    "pound_sign",
    "cent_sign",
    "infinity",
    "section_sign",
    "pilcrow_sign",
    "bullet",
    "ª",
)


class ChatInput(Input):
    """An :class:`Input` that also remembers sent lines and completes names and commands.

    ``candidates`` returns the member names and room names Tab may offer.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous line", show=False),
        Binding("down", "history_next", "Next line", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    class Pasted(Message):
        """Several lines were pasted; the screen decides whether to send them."""

        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

    def __init__(
        self,
        candidates: Callable[[], tuple[Sequence[str], Sequence[str]]] = lambda: ((), ()),
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = InputHistory()
        self.completer = TabCompleter()
        self._candidates = candidates

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return key not in ALT_DIGIT_KEYS and super().check_consume_key(key, character)

    def remember(self, line: str) -> None:
        """Add a sent line to the history (the screen calls this once it is sent)."""
        self.history.add(line)

    def _replace_value(self, value: str | None) -> None:
        if value is not None:
            self.value = value
            self.cursor_position = len(value)

    def action_history_previous(self) -> None:
        self._replace_value(self.history.previous(self.value))

    def action_history_next(self) -> None:
        self._replace_value(self.history.next())

    def action_complete(self) -> None:
        users, rooms = self._candidates()
        head, tail = self.value[: self.cursor_position], self.value[self.cursor_position :]
        completed = self.completer.complete(head, users, rooms)  # a second Tab cycles
        if completed is not None:
            self.value = completed + tail
            self.cursor_position = len(completed)

    def _on_paste(self, event: events.Paste) -> None:
        # Textual calls every class's handler in turn; prevent_default stops Input's.
        lines = [line for line in event.text.splitlines() if line.strip()]
        if len(lines) > 1:
            event.prevent_default()
            event.stop()
            self.post_message(self.Pasted(lines))
