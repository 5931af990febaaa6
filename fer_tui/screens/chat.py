"""The chat screen: message log, members, face preview, status line, input."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from fer_tui.inert import inert
from fer_tui.widgets import FacePreview, MemberList, MessageLog, StatusBar
from fer_tui.widgets.message_log import DEFAULT_SCROLLBACK
from fer_tui.widgets.search import SearchBar
from hub.protocol import MAX_TEXT_CHARS


class ChatScreen(Screen[None]):
    """Layout only; the app owns the connection and the camera and calls in here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+f", "search", "Search", priority=True),
    ]

    class Ready(Message):
        """Posted once the screen's widgets are mounted."""

    def __init__(self, me: str, room: str, scrollback: int = DEFAULT_SCROLLBACK) -> None:
        super().__init__()
        self.me = me
        self.room = room
        self.scrollback = scrollback

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield MessageLog(self.scrollback, id="log")
            with Vertical(id="sidebar"):
                yield MemberList(self.me, id="members")
                yield FacePreview(id="preview")
        yield SearchBar(id="search")
        yield StatusBar(id="status")
        yield Input(
            placeholder="Type a message and press Enter",
            id="message-input",
            max_length=MAX_TEXT_CHARS,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = inert(f"{self.me} in {self.room}")
        self.query_one(StatusBar).room = self.room
        self.query_one("#message-input", Input).focus()
        self.post_message(self.Ready())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        # Cleared only once the message is in the outbox: nothing typed is lost.
        if self.app.send_message(text) is not None:  # type: ignore[attr-defined]
            event.input.clear()

    def action_search(self) -> None:
        """Ctrl+F: search the log on screen."""
        self.query_one(SearchBar).open(self.log_view)

    @property
    def log_view(self) -> MessageLog:
        return self.query_one(MessageLog)

    @property
    def members(self) -> MemberList:
        return self.query_one(MemberList)

    @property
    def preview(self) -> FacePreview:
        return self.query_one(FacePreview)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)
