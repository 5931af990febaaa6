"""The chat screen: room list, one log per buffer, members and moods, status, input.

Layout and key bindings only: the app owns the connections, the camera and the
buffers' state, and calls the methods here to show them; what the user types
goes up to :meth:`FerApp.submit_line <fer_tui.app.FerApp.submit_line>`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Header, Input, Static

from fer_tui.buffers import Buffer, Buffers
from fer_tui.inert import inert, inert_text
from fer_tui.widgets import FacePreview, MemberList, MessageLog, StatusBar
from fer_tui.widgets.chat_input import ALT_DIGIT_KEYS, ChatInput
from fer_tui.widgets.message_log import DEFAULT_SCROLLBACK
from fer_tui.widgets.mood_summary import MoodSummary
from fer_tui.widgets.room_list import NUMBERED, RoomList
from fer_tui.widgets.search import SearchBar
from fer_tui.widgets.tag_indicator import TagIndicator
from hub.protocol import MAX_TEXT_CHARS


class ChatScreen(Screen[None]):
    """Layout only (see the module docstring)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+f", "search", "Search", priority=True),
        Binding("ctrl+n", "app.step_buffer(1)", "Next room", priority=True),
        Binding("ctrl+p", "app.step_buffer(-1)", "Prev room", priority=True),
        *(
            Binding(
                f"alt+{n},{key}",
                f"app.select_buffer({n - 1})",
                f"Room {n}",
                show=False,
                priority=True,
            )
            for n, key in enumerate(ALT_DIGIT_KEYS[:NUMBERED], start=1)
        ),
        Binding("alt+h", "app.show_highlights", "Highlights", show=False),
        Binding("alt+w", "app.withhold_tag", "Withhold tag", priority=True),
        Binding("alt+e", "app.pick_label", "Pick label", priority=True),
    ]

    class Ready(Message):
        """Posted once the screen's widgets are mounted."""

    def __init__(self, me: str, room: str, scrollback: int = DEFAULT_SCROLLBACK) -> None:
        super().__init__()
        self.me = me
        self.room = room
        self.scrollback = scrollback
        self._log_ids: dict[str, str] = {}  # buffer key → its MessageLog's widget id
        self._ids = itertools.count(1)
        self.candidates: tuple[Sequence[str], Sequence[str]] = ((), ())

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield RoomList(id="rooms")
            with Vertical(id="centre"):
                yield Static("", id="topic", markup=False)
                yield ContentSwitcher(id="buffers")
            with Vertical(id="sidebar"):
                yield MoodSummary(id="mood")
                yield MemberList(self.me, id="members")
                yield FacePreview(id="preview")
        yield SearchBar(id="search")
        yield StatusBar(id="status")
        with Horizontal(id="input-row"):
            yield ChatInput(
                lambda: self.candidates,
                placeholder="Type a message or /help and press Enter",
                id="message-input",
                max_length=MAX_TEXT_CHARS,
            )
            yield TagIndicator(id="tag")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = inert(f"{self.me} in {self.room}")
        self.query_one(StatusBar).room = self.room
        self.message_input.focus()
        self.post_message(self.Ready())

    # --- what the user does ----------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.message_input:
            return  # the search bar's
        line = event.value
        if not line.strip():
            return
        # Cleared only once the line was taken (a message is in the outbox): nothing is lost.
        # ignore: self.app is typed App; this screen only ever runs inside FerApp.
        if self.app.submit_line(line):  # type: ignore[attr-defined]
            self.message_input.remember(line)
            event.input.clear()

    def on_chat_input_pasted(self, event: ChatInput.Pasted) -> None:
        self.app.paste_lines(event.lines)  # type: ignore[attr-defined]

    def on_room_list_picked(self, event: RoomList.Picked) -> None:
        self.app.action_select_buffer(event.index)  # type: ignore[attr-defined]

    # --- buffers ---------------------------------------------------------------

    def add_log(self, key: str) -> MessageLog:
        """Mount an empty log for buffer ``key`` (hidden until shown)."""
        log = MessageLog(self.scrollback, id=f"buffer-{next(self._ids)}", classes="buffer-log")
        self._log_ids[key] = log.id or ""
        self.query_one(ContentSwitcher).mount(log)
        if self.query_one(ContentSwitcher).current is None:
            self.query_one(ContentSwitcher).current = log.id
        else:
            log.display = False
        return log

    def remove_log(self, key: str) -> None:
        widget_id = self._log_ids.pop(key, None)
        if widget_id is not None:
            self.query_one(f"#{widget_id}", MessageLog).remove()

    def rekey_log(self, old: str, new: str) -> None:
        """A buffer's key changed (a direct conversation's peer renamed)."""
        if old in self._log_ids:
            self._log_ids[new] = self._log_ids.pop(old)

    def clear_log(self, key: str) -> MessageLog:
        """Replace buffer ``key``'s log with an empty one."""
        shown = self._log_ids.get(key) == self.query_one(ContentSwitcher).current
        self.remove_log(key)
        log = self.add_log(key)
        if shown:
            self.query_one(ContentSwitcher).current = log.id
        return log

    def log_for(self, key: str) -> MessageLog | None:
        widget_id = self._log_ids.get(key)
        return None if widget_id is None else self.query_one(f"#{widget_id}", MessageLog)

    def show_buffer(self, buffer: Buffer, buffers: Buffers, me: str) -> None:
        """Bring ``buffer``'s log, topic and members to the front."""
        widget_id = self._log_ids.get(buffer.key)
        if widget_id is not None:
            self.query_one(ContentSwitcher).current = widget_id
        self.room = buffer.title
        self.sub_title = inert(f"{me} in {buffer.title}")
        self.status.room = buffer.title
        self.show_topic(buffer)
        self.rooms.show(buffers)

    def show_topic(self, buffer: Buffer) -> None:
        topic = self.query_one("#topic", Static)
        if buffer.kind == "direct":
            topic.update(inert_text(f"direct messages with {buffer.peer} (via {buffer.room})"))
        elif buffer.kind == "highlights":
            topic.update(Text("messages that mentioned you"))
        elif buffer.topic:
            topic.update(inert_text(buffer.topic))
        else:
            topic.update(Text("no topic – /topic TEXT sets one"))
        topic.set_class(not buffer.topic, "-empty")

    def action_search(self) -> None:
        """Ctrl+F: search the log on screen."""
        self.query_one(SearchBar).open(self.log_view)

    # --- widgets ---------------------------------------------------------------

    @property
    def log_view(self) -> MessageLog:
        """The log being shown."""
        current = self.query_one(ContentSwitcher).current
        return self.query_one(f"#{current}", MessageLog)

    @property
    def members(self) -> MemberList:
        return self.query_one(MemberList)

    @property
    def mood(self) -> MoodSummary:
        return self.query_one(MoodSummary)

    @property
    def rooms(self) -> RoomList:
        return self.query_one(RoomList)

    @property
    def preview(self) -> FacePreview:
        return self.query_one(FacePreview)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def tag(self) -> TagIndicator:
        return self.query_one(TagIndicator)

    @property
    def message_input(self) -> ChatInput:
        return self.query_one(ChatInput)
