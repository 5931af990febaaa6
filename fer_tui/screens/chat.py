"""The chat screen: message log, members, face preview, status line, input."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from fer_tui.widgets import FacePreview, MemberList, MessageLog, StatusBar
from hub.protocol import MAX_TEXT_CHARS


class ChatScreen(Screen[None]):
    """Layout only; the app owns the connection and the camera and calls in here."""

    class Ready(Message):
        """Posted once the screen's widgets are mounted."""

    def __init__(self, me: str, room: str) -> None:
        super().__init__()
        self.me = me
        self.room = room

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield MessageLog(id="log")
            with Vertical(id="sidebar"):
                yield MemberList(self.me, id="members")
                yield FacePreview(id="preview")
        yield StatusBar(id="status")
        yield Input(
            placeholder="Type a message and press Enter",
            id="message-input",
            max_length=MAX_TEXT_CHARS,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.me} in {self.room}"
        self.query_one(StatusBar).room = self.room
        self.query_one("#message-input", Input).focus()
        self.post_message(self.Ready())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        # Cleared only once the message is in the outbox: nothing typed is lost.
        # ignore: self.app is typed App; this screen only ever runs inside FerApp.
        if self.app.send_message(text) is not None:  # type: ignore[attr-defined]
            event.input.clear()

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
