"""Snapshot tests of the main screens (pytest-textual-snapshot).

The hub and camera workers are replaced by fixed events, so the screens are
deterministic; everything the widgets draw is the real code. Update with
``pytest tests/test_client_snapshots.py --snapshot-update`` after a deliberate
UI change, and review the SVGs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time

import numpy as np
import pytest
from textual.widgets import Input

from fer_tui.app import FerApp
from fer_tui.config import Settings
from fer_tui.connection import (
    JoinedRoom,
    MessageReceived,
    PresenceChanged,
    StateChanged,
    TopicChanged,
)
from hub.protocol import ChatMessage, Emotion, Joined, Member, Presence

pytest.importorskip("pytest_textual_snapshot")

SIZE = (100, 30)
T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


class FrozenApp(FerApp):
    """The real app with its hub and camera workers switched off."""

    def run_connection(self) -> None:  # type: ignore[override]
        pass

    def start_camera(self) -> None:  # type: ignore[override]
        self._camera_text = "device 0"
        self._model_text = "emotion_int8.tflite"
        self._refresh_camera_status()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def face_crop() -> np.ndarray:
    """A synthetic 48×48 'face': a bright oval with two dark eyes and a mouth."""
    yy, xx = np.mgrid[0:48, 0:48]
    crop = np.where(((xx - 24) / 17) ** 2 + ((yy - 24) / 21) ** 2 <= 1, 200, 40)
    for cx in (17, 31):
        crop[(xx - cx) ** 2 + (yy - 19) ** 2 <= 6] = 30
    crop[(yy >= 33) & (yy <= 35) & (xx >= 17) & (xx <= 31)] = 60
    return crop.astype(np.uint8)


def message(seq: int, user: str, text: str, emotion: Emotion | None) -> ChatMessage:
    return ChatMessage("lobby", seq, f"id{seq}", user, text, emotion, T0 + 7 * seq)


def no_blink(app: FerApp) -> None:
    """A blinking cursor would make the screenshots depend on timing."""
    for field in app.screen.query(Input):
        field.cursor_blink = False


async def fill_chat(app: FerApp, online: bool = True) -> None:
    no_blink(app)
    members = (Member("ada", Emotion("happy", 0.91)), Member("grace", None))
    event = functools.partial(app._on_hub_event, "lobby")
    event(
        StateChanged(
            "online" if online else "offline", "" if online else "hub went away; retrying in 1.6s"
        )
    )
    event(JoinedRoom(Joined("lobby", "ada", members, (), 0)))
    event(PresenceChanged(Presence("join", "linus", (*members, Member("linus", None)))))
    event(MessageReceived(message(1, "grace", "Morning! Coffee?", None), own=False))
    event(
        MessageReceived(
            message(2, "ada", "Yes please, I just fixed the build", Emotion("happy", 0.91)),
            own=True,
        )
    )
    event(
        MessageReceived(
            message(3, "linus", "Who broke it in the first place?", Emotion("surprise", 0.64)),
            own=False,
        )
    )
    app.chat.preview.show(face_crop(), "happy", 0.88, None)
    await settle(app)


async def settle(app: FerApp) -> None:
    """Lay out the log's arrivals now (a timer does it once per frame otherwise)."""
    await asyncio.sleep(0)
    app.chat.log_view.flush()


def chat_app(**settings) -> FrozenApp:
    base = Settings(server="ws://hub.invalid:8765", room="lobby", name="ada", camera="0")
    app = FrozenApp(base.merged(settings))
    app.clock = lambda: T0 + 120  # the mood summary's window ends 2 minutes after T0
    return app


def test_join_screen(snap_compare) -> None:
    app = FrozenApp(Settings(server="ws://hub.invalid:8765", camera="none"))

    async def run_before(pilot) -> None:
        await pilot.pause()
        no_blink(pilot.app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_chat_screen(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await pilot.pause()
        await fill_chat(pilot.app)
        await pilot.pause(0.1)  # the side panels redraw on a short timer

    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=run_before)


def test_chat_screen_offline_tagging_off_pending(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await pilot.pause()
        app = pilot.app
        await fill_chat(app, online=False)
        await pilot.press("ctrl+t")
        from fer_tui.widgets.message_log import LogEntry

        app.chat.log_view.add_entry(
            LogEntry(
                "local1",
                "ada",
                "Typed while offline",
                None,
                T0 + 60,
                own=True,
                pending=True,
                untagged_reason="tagging off",
            )
        )
        app.chat.status.pending = 1
        await settle(app)
        app.clear_notifications()  # the toast's fade timing would make this flaky
        await pilot.pause(0.1)

    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=run_before)


def test_rooms_mentions_and_moods(snap_compare) -> None:
    """Three rooms and a direct conversation: unread counts, a mention mark, the
    highlighted mention, an action, a hand-picked tag, sparklines and the mood bar."""

    async def run_before(pilot) -> None:
        await pilot.pause()
        app = pilot.app
        await fill_chat(app)
        lobby = functools.partial(app._on_hub_event, "lobby")
        lobby(TopicChanged("lobby", "Release on Friday", "grace"))
        moods = ["happy", "neutral", "sad", "happy", "surprise", "happy"]
        for n, label in enumerate(moods, start=4):
            lobby(MessageReceived(message(n, "linus", f"tag {n}", Emotion(label, 0.7)), own=False))
        lobby(
            MessageReceived(
                dataclasses.replace(
                    message(10, "grace", "waves at ada", Emotion("happy", 1.0, picked=True)),
                    action=True,
                ),
                own=False,
            )
        )
        for room in ("ops", "random"):
            app.open_room(room, show=False)
            event = functools.partial(app._on_hub_event, room)
            event(JoinedRoom(Joined(room, "ada", (Member("ada", None),), (), 0)))
        ops = functools.partial(app._on_hub_event, "ops")
        ops(MessageReceived(message(1, "grace", "deploy done", None), own=False))
        ops(MessageReceived(message(2, "grace", "ada, can you check?", None), own=False))
        lobby(
            MessageReceived(
                dataclasses.replace(message(11, "linus", "a word in private", None), to="ada"),
                own=False,
            )
        )
        app.chat.preview.display = False
        await pilot.pause(0.1)

    assert snap_compare(chat_app(), terminal_size=(120, 34), run_before=run_before)


def test_chat_log_rendering(snap_compare) -> None:
    """Date lines, an action, a hand-picked label, a direct message, a mention, hostile
    controls shown inert, a wrapped line, and a search with its current match."""
    from fer_tui.widgets.message_log import LogEntry

    async def run_before(pilot) -> None:
        await pilot.pause()
        app = pilot.app
        await fill_chat(app)
        log = app.chat.log_view
        rows = [
            LogEntry(
                "e1", "grace", "waves at everyone", Emotion("happy", 0.8), T0 + 60, action=True
            ),
            LogEntry(
                "e2",
                "linus",
                "chose this one by hand",
                Emotion("angry", 0.99),
                T0 + 70,
                picked=True,
            ),
            LogEntry("e3", "grace", "psst, only you see this", None, T0 + 80, direct=True),
            LogEntry(
                "e4",
                "linus",
                "ada, is the build green? coffee first",
                Emotion("neutral", 0.5),
                T0 + 90,
                mention=True,
            ),
            LogEntry(
                "e5", "eve\x1b[2J", "\x1b]0;PWNED\x07 [bold]not markup[/] \u202eabc", None, T0 + 100
            ),
            LogEntry(
                "e6",
                "grace",
                "Tomorrow then, and bring more coffee for everyone in the room please",
                Emotion("happy", 0.7),
                T0 + 86_400,
            ),
        ]
        for row in rows:
            log.add_entry(row)
        await settle(app)
        await pilot.press("ctrl+f", *"coffee")
        no_blink(app)
        await pilot.pause()

    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=run_before)
