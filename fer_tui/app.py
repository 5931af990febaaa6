"""The Textual application: wires the hub connections and the face pipeline to the screens.

Blocking work stays off the UI thread: the camera, detector and model start in
a thread worker and then run in :class:`~fer_tui.pipeline.CaptureThread`; each
joined room has its own hub connection in an async worker (and, without
``--server``, an embedded hub runs in another). Enter only reads the capture
thread's latest result.

The app owns the state of every buffer (:mod:`fer_tui.buffers`): what the
user types is parsed by :mod:`fer_tui.commands`; hub events are routed to the
buffer of their room or direct conversation, and the chat screen is told what
to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from fer_tui import commands
from fer_tui.alerts import mentions, notification_sequence
from fer_tui.buffers import Buffer, Buffers, direct_key
from fer_tui.config import Settings
from fer_tui.emotions import emoji_for
from fer_tui.inert import inert
from fer_tui.screens import ChatScreen, ConfirmPaste, JoinScreen, PickLabel
from fer_tui.widgets.message_log import LogEntry, MessageLog
from hub.protocol import ChatMessage, Emotion, Joined, Member, Presence

if TYPE_CHECKING:  # the heavy modules load in workers, after the first screen
    from fer_tui.connection import HubConnection, HubEvent
    from fer_tui.pipeline import Analysis, CaptureThread, FrameSource, Tag
    from fer_tui.pipeline.debug import DebugWriter

#: Port the embedded hub tries first, so a second local client can join it.
EMBEDDED_PORT = 8765

_FROM_SETTINGS = object()

#: How often at most the room list, members and mood are redrawn while messages arrive.
SIDE_REFRESH_SECONDS = 1 / 30


class FerApp(App[None]):
    """FER-TMS chat client."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "FER-TMS"
    #: Ctrl+P steps back through the rooms (as Ctrl+N steps on).
    COMMAND_PALETTE_BINDING: ClassVar[str] = "ctrl+backslash"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "toggle_tagging", "Tagging on/off", priority=True),
        Binding("ctrl+o", "toggle_preview", "Preview", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        frame_source: FrameSource | object | None = _FROM_SETTINGS,
        embedded_port: int = EMBEDDED_PORT,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.tagging = settings.tagging
        self.capture: CaptureThread | None = None
        self.buffers = Buffers()
        self.connections: dict[str, HubConnection] = {}  # room → its own connection
        #: For the next message only: "withheld" (no tag) or a hand-picked label.
        self.override: str | None = None
        #: Desktop notifications written to the terminal (tests read it).
        self.notifications_sent = 0
        #: The clock the mood summary's window ends at (snapshot tests freeze it).
        self.clock: Callable[[], float] = time.time
        self._side_refresh_due = False
        self.hub_url: str | None = None  # known once the hub is found (or started)
        self.chat: ChatScreen | None = None
        self.user: str = settings.name or ""
        self.room: str = settings.room or ""
        self._frame_source = frame_source
        self._embedded_port = embedded_port
        self._camera_text = "starting…"
        self._model_text = "loading…"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._debug: DebugWriter | None = None
        self._closing = False
        self._preview_reason: str | None = None

    # --- start-up ------------------------------------------------------------

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.settings.debug_dir:
            from fer_tui.pipeline.debug import DebugWriter

            self._debug = DebugWriter(self.settings.debug_dir)
        if self.user and self.room:
            self._open_chat()
        else:
            self.push_screen(JoinScreen(self.user, self.room), self._joined_form)

    def _joined_form(self, result: tuple[str, str] | None) -> None:
        if result is None:
            self.exit()
            return
        self.user, self.room = result
        self._open_chat()

    def _open_chat(self) -> None:
        self.chat = ChatScreen(self.user, self.room, scrollback=self.settings.scrollback)
        self.push_screen(self.chat)

    def on_chat_screen_ready(self, event: ChatScreen.Ready) -> None:
        assert self.chat is not None
        self.chat.status.tagging = self.tagging
        self.chat.preview.display = self.settings.preview
        self.chat.add_log(self.buffers.highlights.key)
        self.open_room(self.room)
        for room in self.settings.rooms:
            self.open_room(room, show=False)
        self._refresh_camera_status()
        self.set_interval(1.0, self._refresh_camera_status)
        self.start_camera()
        self.run_connection()

    @work(thread=True, exclusive=True, group="camera")
    def start_camera(self) -> None:
        """Open the camera source and load the detector and model (blocking: a thread)."""
        from fer_tui.classifier import BUNDLED_MODEL, EmotionClassifier, ModelError
        from fer_tui.pipeline import CameraError, CaptureThread, FacePipeline, open_source
        from fer_tui.pipeline.detector import FaceDetector

        classifier = None
        model_path = Path(self.settings.model) if self.settings.model else BUNDLED_MODEL
        try:
            classifier = EmotionClassifier(model_path, num_threads=1)
            self._model_text = classifier.name
        except ModelError as exc:
            self._model_text = f"none ({exc})"
        try:
            if self._frame_source is _FROM_SETTINGS:
                source = open_source(self.settings.camera)
            else:
                # ignore: not the sentinel, so a FrameSource or None; mypy does not narrow by `is`.
                source = self._frame_source  # type: ignore[assignment]
        except CameraError as exc:
            self._camera_text = f"off ({exc})"
            self._refresh_from_thread()
            return
        if source is None:
            self._camera_text = "off"
            self._refresh_from_thread()
            return
        try:
            detector = FaceDetector()
        except ImportError as exc:  # no OpenCV, or its YuNet model missing or altered
            source.close()
            self._camera_text = f"off (no face detector: {exc})"
            self._refresh_from_thread()
            return
        capture = CaptureThread(
            source,
            FacePipeline(detector, classifier),
            self.settings.fps,
            self._analysis_from_thread,
        )
        self._camera_text = source.description
        self.capture = capture
        capture.start()
        if self._closing:  # the app quit while the camera was starting
            capture.stop()
            return
        self._refresh_from_thread()

    def _refresh_from_thread(self) -> None:
        self._call_soon(self._refresh_camera_status)

    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback`` on the UI loop from another thread, without waiting for it."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the app has quit
            self._loop.call_soon_threadsafe(callback, *args)

    def _refresh_camera_status(self) -> None:
        with contextlib.suppress(NoMatches):  # the app is closing
            self._show_camera_status()

    def _show_camera_status(self) -> None:
        if self.chat is None or not self.chat.is_mounted:
            return
        status = self.chat.status
        error = self.capture.error if self.capture is not None else None
        status.camera = f"{self._camera_text} ({error})" if error else self._camera_text
        status.model = self._model_text
        self._show_next_tag()
        if self.capture is None:
            reason = "tagging off" if not self.tagging else self._camera_text
            if reason != self._preview_reason:  # redraw on change, not every second
                self._preview_reason = reason
                self.chat.preview.show(None, None, 0.0, reason)

    def _analysis_from_thread(self, analysis: Analysis) -> None:
        self._call_soon(self._show_analysis, analysis)  # called on the capture thread

    def _show_analysis(self, analysis: Analysis) -> None:
        if self.chat is None or not self.chat.is_mounted:
            return
        tag = self.current_tag()
        with contextlib.suppress(NoMatches):  # the app is closing
            self._show_next_tag()
            if self.chat.preview.display:  # hidden: skip the drawing
                self.chat.preview.show(analysis.crop, tag.label, tag.confidence, tag.reason)

    @work(exclusive=True, group="hub")
    async def run_connection(self) -> None:
        """Find the hub (``--server``, or one run in-process) and connect every room to it."""
        # Import websockets & co. in a thread: the UI keeps drawing meanwhile.
        modules = ["fer_tui.connection"] + (["hub.server"] if self.settings.server is None else [])
        await asyncio.to_thread(lambda: [importlib.import_module(name) for name in modules])
        if self.settings.server is not None:
            self._hub_found(self.settings.server)
            return
        from hub.server import HubConfig, serve_hub

        try:
            hub = serve_hub(HubConfig(host="127.0.0.1", port=self._embedded_port))
            running = await hub.__aenter__()
        except OSError:  # the usual port is taken: any free one
            hub = serve_hub(HubConfig(host="127.0.0.1", port=0))
            running = await hub.__aenter__()
        try:
            self._notice(f"No --server given: started a local hub on {running.url}")
            self._hub_found(running.url)
            await asyncio.Event().wait()  # the hub lives as long as the app
        finally:
            for connection in list(self.connections.values()):
                await connection.close()
            await hub.__aexit__(None, None, None)

    def _hub_found(self, url: str) -> None:
        self.hub_url = url
        for buffer in self.buffers.rooms():
            self._connect_room(buffer.room)

    def _connect_room(self, room: str) -> None:
        """Open ``room``'s own connection (one per room: the hub's model) in a worker."""
        from fer_tui.connection import HubConnection

        if self.hub_url is None or room in self.connections:
            return  # the rest happens when the hub is found
        connection = HubConnection(
            self.hub_url,
            room,
            self.user,
            functools.partial(self._on_hub_event, room),
            token=self.settings.token,
        )
        self.connections[room] = connection
        self.run_worker(self._run_room(connection), group=f"room:{room}", name=room)

    async def _run_room(self, connection: HubConnection) -> None:
        try:
            await connection.run()
        finally:
            await connection.close()

    # --- buffers -------------------------------------------------------------

    @property
    def connection(self) -> HubConnection | None:
        """The connection of the room being shown (else of the first room), if any."""
        buffer = self.buffers.current
        if buffer is not None and buffer.room in self.connections:
            return self.connections[buffer.room]
        return next(iter(self.connections.values()), None)

    def open_room(self, room: str, *, show: bool = True) -> Buffer:
        """Join ``room`` in a new buffer (or return its buffer if joined)."""
        buffer, new = self.buffers.add_room(room)
        if new and self.chat is not None:
            self.chat.add_log(buffer.key)
            self._connect_room(room)
        if show:
            self.show_buffer(buffer.key)
        else:
            self._refresh_rooms()
        return buffer

    def open_direct(self, room: str, peer: str, *, show: bool = False) -> Buffer:
        buffer, new = self.buffers.add_direct(room, peer)
        if new and self.chat is not None:
            self.chat.add_log(buffer.key)
        if show:
            self.show_buffer(buffer.key)
        else:
            self._refresh_rooms()
        return buffer

    def close_buffer(self, key: str) -> None:
        """Close a buffer; closing a room leaves it (its connection closes)."""
        for buffer in self.buffers.remove(key):
            if self.chat is not None:
                self.chat.remove_log(buffer.key)
            connection = self.connections.pop(buffer.room, None) if buffer.kind == "room" else None
            if connection is not None:
                self.run_worker(connection.close(), group="closing")
        current = self.buffers.current
        if current is not None:
            self.show_buffer(current.key)

    def show_buffer(self, key: str) -> None:
        buffer = self.buffers.select(key)
        if buffer is None or self.chat is None or not self.chat.is_mounted:
            return
        self.room = buffer.room or self.room
        self.chat.show_buffer(buffer, self.buffers, self._my_name(buffer.room))
        self._show_room_side(buffer)
        self._show_connection_status()

    def _refresh_rooms(self) -> None:
        if self.chat is not None and self.chat.is_mounted:
            self.chat.rooms.show(self.buffers)

    def _room_buffer(self, room: str) -> Buffer | None:
        buffer = self.buffers.get(room)
        return buffer if buffer is not None and buffer.kind == "room" else None

    def _my_name(self, room: str) -> str:
        connection = self.connections.get(room)
        return connection.user if connection is not None else self.user

    def _show_room_side(self, buffer: Buffer) -> None:
        """Members, moods and completion candidates of the buffer's room."""
        if self.chat is None:
            return
        room = self._room_buffer(buffer.room)
        members = room.members if room is not None else ()
        self.chat.members.me = self._my_name(buffer.room)
        self.chat.members.set_members(members, room.moods if room is not None else None)
        self._show_mood(room)
        self.chat.candidates = (
            [m.user for m in members],
            [b.room for b in self.buffers.rooms()],
        )

    def _show_mood(self, room: Buffer | None) -> None:
        if self.chat is None:
            return
        window = self.settings.mood_minutes
        shares = room.moods.shares(self.clock(), window * 60) if room is not None else []
        self.chat.mood.show(shares, window)

    def _refresh_current_room(self, room: str) -> None:
        current = self.buffers.current
        if current is not None and current.room == room:
            self._show_room_side(current)

    def _buffer_log(self, key: str) -> MessageLog | None:
        return self.chat.log_for(key) if self.chat is not None else None

    # --- hub events ----------------------------------------------------------

    def _on_hub_event(self, room: str, event: HubEvent) -> None:
        with contextlib.suppress(NoMatches):  # the app is closing
            self._show_hub_event(room, event)

    def _show_hub_event(self, room: str, event: HubEvent) -> None:
        from fer_tui.connection import (
            RESEND_ERRORS,
            HistoryPage,
            HubError,
            JoinedRoom,
            MessageReceived,
            PresenceChanged,
            StateChanged,
            TopicChanged,
        )

        buffer = self._room_buffer(room)
        if buffer is None or self.chat is None or not self.chat.is_mounted:
            return  # a room we left
        if isinstance(event, StateChanged):
            buffer.state = event.state
            buffer.detail = event.detail if event.state != "online" else ""
        elif isinstance(event, JoinedRoom):
            self._show_joined(buffer, event.joined)
        elif isinstance(event, MessageReceived):
            self._show_message(buffer, event.message, event.own)
        elif isinstance(event, PresenceChanged):
            self._show_presence(buffer, event.presence)
        elif isinstance(event, TopicChanged):
            buffer.topic = event.topic
            who = inert(event.user) if event.user else "someone"
            self._notice(f"{who} set the topic: {inert(event.topic or '')}", buffer.key)
            current = self.buffers.current
            if current is buffer:
                self.chat.show_topic(buffer)
        elif isinstance(event, HistoryPage):
            self._show_history_page(buffer, event.messages)
            buffer.history_complete = buffer.history_complete or event.complete
        elif isinstance(event, HubError):
            error = event.error
            self.notify(  # wire text: made inert, and never read as markup
                inert(error.message),
                title=f"hub: {inert(error.code)}",
                severity="warning",
                markup=False,
            )
            where = buffer.key
            if error.id is not None and error.code not in RESEND_ERRORS:
                where = self._mark_undelivered(buffer, error.id) or where
            self._notice(f"hub refused: {inert(error.message)}", where)
        self._show_connection_status()

    def _mark_undelivered(self, room: Buffer, message_id: str) -> str | None:
        """A message the hub refused for good (a DM to someone who left) stops pending.

        Returns the key of the buffer that shows it, if any.
        """
        for buffer in self.buffers:
            log = self._buffer_log(buffer.key) if buffer.room == room.room else None
            entry = log.entry(message_id) if log is not None else None
            if log is not None and entry is not None:
                log.add_entry(
                    dataclasses.replace(entry, pending=False, text=f"{entry.text}  ✗ not delivered")
                )
                return buffer.key
        return None

    def _show_connection_status(self) -> None:
        current = self.buffers.current
        if self.chat is None or current is None:
            return
        room = self._room_buffer(current.room)
        status = self.chat.status
        status.connection = room.state if room is not None else "offline"
        status.detail = room.detail if room is not None else ""
        connection = self.connections.get(current.room)
        status.pending = connection.pending if connection is not None else 0

    def _show_joined(self, buffer: Buffer, joined: Joined) -> None:
        buffer.members = joined.members
        buffer.topic = joined.topic
        buffer.live_after = joined.seq
        self._notice(f"joined {inert(joined.room)} as {inert(joined.user)}", buffer.key)
        if buffer is self.buffers.current and self.chat is not None:
            self.chat.show_topic(buffer)
        self._refresh_current_room(buffer.room)

    def _show_presence(self, room: Buffer, presence: Presence) -> None:
        room.members = presence.members
        user = inert(presence.user)
        if presence.event == "nick" and presence.old is not None:
            room.moods.rename(presence.old, presence.user)
            direct = self.buffers.rename_peer(room.room, presence.old, presence.user)
            if direct is not None and self.chat is not None:
                self.chat.rekey_log(direct_key(room.room, presence.old), direct.key)
            if self.connections.get(room.room) is not None and presence.user == self._my_name(
                room.room
            ):
                self.user = presence.user
            self._notice(f"{inert(presence.old)} is now known as {user}", room.key)
            self._refresh_rooms()
        else:
            verb = "joined" if presence.event == "join" else "left"
            self._notice(f"{user} {verb}", room.key)
        self._refresh_current_room(room.room)

    def _show_message(self, room: Buffer, message: ChatMessage, own: bool) -> None:
        """Put a message from the hub in its buffer; note moods, unread and mentions."""
        direct = message.to is not None
        target = room
        if direct:
            peer = message.to if own else message.user
            target = self.open_direct(room.room, peer or message.user)
        me = self._my_name(room.room)
        mention = not own and mentions(message.text, me)
        entry = self._entry(message, own, mention)
        log = self._buffer_log(target.key)
        if log is not None:
            log.add_entry(entry)
        if not direct:  # a direct message carries the room's seq but is not in its history
            if room.oldest_seq is None or message.seq < room.oldest_seq:
                room.oldest_seq = message.seq
            label = message.emotion.label if message.emotion is not None else None
            room.moods.record(message.user, label, message.ts)
            # The sender's latest expression; history from people who left lists no one.
            room.members = tuple(
                Member(m.user, message.emotion) if m.user == message.user else m
                for m in room.members
            )
        if not own:
            self.buffers.note_arrival(target, mention or direct)
            if mention:
                self._add_highlight(room, entry)
            live = direct or room.live_after is None or message.seq > room.live_after
            if (mention or direct) and live:
                self._alert(room, message)
        self._refresh_side_soon()

    def _refresh_side_soon(self) -> None:
        """Redraw the room list, members and mood at most once a frame, not per message."""
        if not self._side_refresh_due:
            self._side_refresh_due = True
            self.set_timer(SIDE_REFRESH_SECONDS, self._refresh_side)

    def _refresh_side(self) -> None:
        self._side_refresh_due = False
        with contextlib.suppress(NoMatches):  # the app is closing
            self._refresh_rooms()
            current = self.buffers.current
            if current is not None:
                self._show_room_side(current)

    def _entry(self, message: ChatMessage, own: bool, mention: bool) -> LogEntry:
        emotion = message.emotion
        return LogEntry(
            message.id,
            sys.intern(message.user),  # one copy per member in a 100k-message log
            message.text,
            emotion,
            message.ts,
            own=own,
            pending=False,
            action=message.action,
            mention=mention,
            picked=bool(emotion is not None and emotion.picked),
            direct=message.to is not None,
        )

    def _add_highlight(self, room: Buffer, entry: LogEntry) -> None:
        highlights = self.buffers.highlights
        log = self._buffer_log(highlights.key)
        if log is not None:
            # The room goes in front of the text: one log shows every room's mentions.
            copy = dataclasses.replace(
                entry, id=f"{room.room}\x00{entry.id}", text=f"[{room.room}] {entry.text}"
            )
            log.add_entry(copy)
        self.buffers.note_arrival(highlights, True)

    def _alert(self, room: Buffer, message: ChatMessage) -> None:
        """Ring the bell and, if enabled and supported, raise a desktop notification."""
        if self.settings.bell:
            self.bell()
        if self.settings.desktop_notify:
            where = "direct message" if message.to is not None else room.room
            sequence = notification_sequence(os.environ, f"{message.user} ({where})", message.text)
            if sequence is not None and self._driver is not None:
                self._driver.write(sequence)
                self.notifications_sent += 1

    def _show_history_page(self, room: Buffer, messages: Sequence[ChatMessage]) -> None:
        """Older messages (scrolled to the top) go in front; a resume's gap is merged."""
        log = self._buffer_log(room.key)
        if log is None:
            return
        oldest = room.oldest_seq
        older = [m for m in messages if m.to is None and (oldest is None or m.seq < oldest)]
        me = self._my_name(room.room)
        if older:
            log.prepend_entries(
                [self._entry(m, m.user == me, m.user != me and mentions(m.text, me)) for m in older]
            )
            room.oldest_seq = older[0].seq
        for message in messages:
            if message not in older:
                self._show_message(room, message, message.user == me)

    def on_message_log_reached_top(self, event: MessageLog.ReachedTop) -> None:
        """Scrolled to the top of a room's log: ask its hub for the page before it."""
        current = self.buffers.current
        if current is None or current.kind != "room" or current.oldest_seq is None:
            return
        if current.history_complete:
            return
        connection = self.connections.get(current.room)
        if connection is not None and current.oldest_seq > 1:
            connection.request_history(current.oldest_seq)

    def _notice(self, text: str, key: str | None = None) -> None:
        """A line from the client in buffer ``key`` (default: the one shown)."""
        if self.chat is None or not self.chat.is_mounted:
            return
        key = key if key is not None else self.buffers.current_key
        log = self._buffer_log(key) if key is not None else None
        if log is not None:
            log.add_notice(text)

    # --- what the user typed -------------------------------------------------

    def submit_line(self, line: str) -> bool:
        """Run a command or send a message; ``True`` when the input may be cleared."""
        parsed = commands.parse(line)
        if isinstance(parsed, commands.CommandError):
            self._notice(parsed.message)
            return False
        if isinstance(parsed, commands.Say):
            return self.send_message(parsed.text) is not None
        return self.run_command(parsed)

    def run_command(self, command: commands.Command) -> bool:
        """Carry out a parsed command (see :mod:`fer_tui.commands`)."""
        current = self.buffers.current
        match command:
            case commands.Join(room):
                self.open_room(room)
            case commands.Part(room):
                return self._part(room)
            case commands.Nick(name):
                self._nick(name)
            case commands.Me(action):
                return self.send_message(action, action=True) is not None
            case commands.Msg(user, text):
                return self._direct_message(user, text)
            case commands.Topic(text):
                return self._topic(text)
            case commands.Who():
                self._who()
            case commands.Clear():
                if current is not None and self.chat is not None:
                    self.chat.clear_log(current.key)
                    self.chat.show_buffer(current, self.buffers, self._my_name(current.room))
            case commands.Quit():
                self.exit()
            case commands.Help(name):
                for text in commands.help_lines(name):
                    self._notice(text)
        return True

    def _part(self, room: str | None) -> bool:
        current = self.buffers.current
        key = room if room is not None else (current.key if current is not None else None)
        buffer = self.buffers.get(key) if key is not None else None
        if buffer is None or buffer.kind == "highlights":
            self._notice(f"not in room {room}" if room else "the highlights buffer stays open")
            return False
        self.close_buffer(buffer.key)
        if not self.buffers.rooms():
            self._notice("you are in no room now: /join ROOM")
        return True

    def _nick(self, name: str) -> None:
        if not self.connections:
            self.user = name
            self._notice(f"you will join as {name}")
            return
        for connection in self.connections.values():
            connection.set_nick(name)
        self._notice(f"asking the hub to call you {name}")

    def _direct_message(self, user: str, text: str) -> bool:
        current = self.buffers.current
        room = self._room_buffer(current.room) if current is not None else None
        if room is None:
            self._notice("/msg needs a room: switch to one first")
            return False
        if user not in {m.user for m in room.members}:
            self._notice(f"nobody called {user} is in {room.room}")
            return False
        direct = self.open_direct(room.room, user, show=True)
        return self.send_message(text, buffer=direct) is not None

    def _topic(self, text: str | None) -> bool:
        current = self.buffers.current
        room = self._room_buffer(current.room) if current is not None else None
        if room is None:
            self._notice("topics belong to rooms: switch to one first")
            return False
        if text is None:
            self._notice(f"topic: {inert(room.topic)}" if room.topic else "no topic is set")
            return True
        connection = self.connections.get(room.room)
        if connection is None:
            self._notice("not connected yet; try again in a moment")
            return False
        connection.set_topic(text)
        return True

    def _who(self) -> None:
        current = self.buffers.current
        room = self._room_buffer(current.room) if current is not None else None
        if room is None:
            self._notice("/who lists a room's members: switch to one first")
            return
        names = []
        for member in sorted(room.members, key=lambda m: m.user.casefold()):
            tags = room.moods.last_tags(member.user)
            mood = " ".join(emoji_for(label) for label in tags[-3:])
            names.append(f"{inert(member.user)} {mood}".strip())
        self._notice(f"{len(names)} in {inert(room.room)}: " + ", ".join(names))

    def paste_lines(self, lines: list[str]) -> None:
        """Several lines were pasted: send each as a message, asking first if there are many."""
        current = self.buffers.current
        target = current.title if current is not None else "nowhere"
        if len(lines) < self.settings.paste_confirm_lines:
            self._send_pasted(lines, True)
            return
        self.push_screen(ConfirmPaste(lines, target), functools.partial(self._send_pasted, lines))

    def _send_pasted(self, lines: list[str], confirmed: bool | None) -> None:
        if not confirmed:
            self._notice(f"paste of {len(lines)} lines dropped")
            return
        for line in lines:  # pasted text is sent as text, never run as commands
            if self.send_message(line[: commands.MAX_TEXT_CHARS]) is None:
                return

    # --- sending -------------------------------------------------------------

    def current_tag(self) -> Tag:
        """The tag a message sent now would carry (reads, never computes)."""
        from fer_tui.pipeline import Tag

        if not self.tagging:
            return Tag(None, reason="tagging off")
        if self.capture is None:
            return Tag(None, reason=f"camera {self._camera_text}")
        return self.capture.tag(self.settings.threshold)

    def _next_emotion(self) -> tuple[Emotion | None, str | None]:
        """The emotion for the next message, the override for one message applied."""
        if self.override == "withheld":
            return None, "withheld"
        if self.override is not None:
            return Emotion(self.override, 1.0, picked=True), None
        tag = self.current_tag()
        if tag.label is None:
            return None, tag.reason
        return Emotion(tag.label, tag.confidence), None

    def send_message(
        self, text: str, *, action: bool = False, buffer: Buffer | None = None
    ) -> str | None:
        """Send ``text`` to ``buffer`` (default: the one shown), tagged; return its id."""
        buffer = buffer if buffer is not None else self.buffers.current
        if self.chat is None or buffer is None:
            return None
        if buffer.kind == "highlights":
            self._notice("highlights only collects mentions: switch to a room to talk")
            return None
        connection = self.connections.get(buffer.room)
        if connection is None:
            self.notify(
                "Still starting up; your text is kept, press Enter again.", severity="warning"
            )
            return None
        emotion, reason = self._next_emotion()
        to = buffer.peer if buffer.kind == "direct" else None
        message_id = connection.send(text, emotion, action=action, to=to)
        log = self._buffer_log(buffer.key)
        if log is not None:
            log.add_entry(
                LogEntry(
                    message_id,
                    connection.user,
                    text,
                    emotion,
                    time.time(),
                    own=True,
                    pending=True,
                    untagged_reason=reason,
                    action=action,
                    picked=self.override not in (None, "withheld"),
                    direct=to is not None,
                )
            )
        self.override = None
        self._show_next_tag()
        self.chat.status.pending = connection.pending
        if self._debug is not None and self.capture is not None:
            self._debug.save(self.capture.latest, message_id)
        return message_id

    def _show_next_tag(self) -> None:
        if self.chat is None or not self.chat.is_mounted:
            return
        tag = self.current_tag()
        override = "withheld" if self.override == "withheld" else None
        label, confidence = tag.label, tag.confidence
        if self.override not in (None, "withheld"):
            label, confidence, override = self.override, 1.0, "picked"
        self.chat.tag.show(label, confidence, tag.reason, override)

    # --- actions -------------------------------------------------------------

    def action_toggle_tagging(self) -> None:
        """Turn emotion tagging off and on."""
        self.tagging = not self.tagging
        if self.chat is not None:
            self.chat.status.tagging = self.tagging
            self._refresh_camera_status()
        self.notify("Tagging on" if self.tagging else "Tagging off: messages go out untagged")

    def action_toggle_preview(self) -> None:
        """Hide or show the face preview."""
        if self.chat is not None:
            self.chat.preview.display = not self.chat.preview.display

    def action_step_buffer(self, offset: int) -> None:
        """Show the next (1) or previous (-1) buffer."""
        buffer = self.buffers.step(offset)
        if buffer is not None:
            self.show_buffer(buffer.key)

    def action_select_buffer(self, index: int) -> None:
        """Show the ``index``-th buffer of the room list (Alt+1 is 0)."""
        buffer = self.buffers.select_index(index)
        if buffer is not None:
            self.show_buffer(buffer.key)

    def action_show_highlights(self) -> None:
        self.show_buffer(self.buffers.highlights.key)

    def action_withhold_tag(self) -> None:
        """Send the next message untagged (press again to undo)."""
        self.override = None if self.override == "withheld" else "withheld"
        self._show_next_tag()

    def action_pick_label(self) -> None:
        """Choose the next message's label by hand; it goes out marked as picked."""

        def picked(label: str | None) -> None:
            if label is not None:
                self.override = label
                self._show_next_tag()

        self.push_screen(PickLabel(), picked)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Toggle tagging",
            "Send messages with or without your expression",
            self.action_toggle_tagging,
        )
        yield SystemCommand(
            "Toggle preview", "Hide or show the face preview", self.action_toggle_preview
        )

    async def on_unmount(self) -> None:
        self._closing = True
        if self.capture is not None:
            await asyncio.to_thread(self.capture.stop)
        for connection in list(self.connections.values()):
            await connection.close()
