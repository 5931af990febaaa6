"""Small modal dialogs: confirm a multi-line paste, pick a label for one message."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from fer_tui.emotions import LABELS, emoji_for

#: Pasted lines shown in the confirmation before "…".
PREVIEW_LINES = 5


class ConfirmPaste(ModalScreen[bool]):
    """Dismissed with ``True`` to send every pasted line, ``False`` to drop them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Send"),
    ]

    def __init__(self, lines: list[str], target: str) -> None:
        super().__init__()
        self.lines = lines
        self.target = target

    def compose(self) -> ComposeResult:
        preview = Text()
        for line in self.lines[:PREVIEW_LINES]:
            preview.append(f"  {line[:60]}\n", style="dim")
        if len(self.lines) > PREVIEW_LINES:
            preview.append(f"  … and {len(self.lines) - PREVIEW_LINES} more\n", style="dim")
        with Vertical(id="dialog"):
            count = len(self.lines)
            yield Label(Text(f"Send {count} lines to {self.target} as {count} messages?"))
            yield Label(preview)
            with Horizontal(id="dialog-buttons"):
                yield Button("Send (y)", variant="primary", id="send")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "send")

    def action_answer(self, send: bool) -> None:
        self.dismiss(send)


class PickLabel(ModalScreen[str | None]):
    """Dismissed with the label chosen for the next message, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Label your next message (sent marked as hand-picked)")
            yield OptionList(
                *(Option(f"{emoji_for(label)} {label}", id=label) for label in LABELS),
                id="labels",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
