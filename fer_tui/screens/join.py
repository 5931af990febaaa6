"""First screen when no name or room was given: ask for them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label

from hub.protocol import MAX_ROOM_CHARS, MAX_USER_CHARS


class JoinScreen(Screen[tuple[str, str]]):
    """Dismissed with ``(name, room)``."""

    def __init__(self, name: str | None = None, room: str | None = None) -> None:
        super().__init__()
        self._name = name or ""
        self._room = room or "lobby"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="join-form"):
            yield Label("Join a room", id="join-title")
            yield Label("Your name")
            yield Input(self._name, placeholder="e.g. ada", id="name", max_length=MAX_USER_CHARS)
            yield Label("Room")
            yield Input(self._room, placeholder="lobby", id="room", max_length=MAX_ROOM_CHARS)
            yield Label("", id="join-error")
            yield Button("Join", variant="primary", id="join")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#name" if not self._name else "#room", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "name":
            self.query_one("#room", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def _submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        room = self.query_one("#room", Input).value.strip()
        error = self.query_one("#join-error", Label)
        if not name or not name.isprintable():
            error.update("Please enter a name.")
            self.query_one("#name", Input).focus()
            return
        if not room or not room.isprintable():
            error.update("Please enter a room.")
            self.query_one("#room", Input).focus()
            return
        self.dismiss((name, room))
