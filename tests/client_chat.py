"""Helpers for the Pilot tests of commands, rooms and moods: an app, peers, log readers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from client_fixtures import wait_until
from hub_fixtures import Peer

from fer_tui.app import FerApp
from fer_tui.config import Settings
from fer_tui.widgets.message_log import LogEntry

SIZE = (120, 34)


class ChatApp(FerApp):
    """The real app; also counts the bells it rings and records what it writes out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bells = 0
        self.written: list[str] = []

    def bell(self) -> None:
        self.bells += 1
        super().bell()

    def on_mount(self) -> None:
        driver = self._driver
        if driver is not None:  # keep what the app writes to the terminal besides frames
            original = driver.write

            def write(data: str) -> None:
                self.written.append(data)
                original(data)

            driver.write = write  # type: ignore[method-assign]
        super().on_mount()


def make_app(url: str, name: str, model: Path, room: str = "lobby", **settings: Any) -> ChatApp:
    base = Settings(
        server=url, room=room, name=name, camera="none", model=str(model), threshold=0.0
    )
    return ChatApp(base.merged(settings), frame_source=None, embedded_port=0)


def online(app: FerApp, room: str | None = None) -> bool:
    connection = app.connections.get(room) if room else app.connection
    return connection is not None and connection.state == "online"


def log_entries(app: FerApp, key: str | None = None) -> list[LogEntry]:
    assert app.chat is not None
    log = app.chat.log_view if key is None else app.chat.log_for(key)
    assert log is not None, key
    entries = log.entries
    return list(entries() if callable(entries) else entries)


def log_texts(app: FerApp, key: str | None = None) -> list[str]:
    return [entry.text for entry in log_entries(app, key)]


def notices(app: FerApp, key: str | None = None) -> list[str]:
    """The notice lines of a buffer's log."""
    assert app.chat is not None
    log = app.chat.log_view if key is None else app.chat.log_for(key)
    assert log is not None
    if hasattr(log, "notices"):  # the virtual log
        found = log.notices
        return list(found() if callable(found) else found)
    return [str(n.render()) for n in log.query(".notice")]


async def type_line(pilot: Any, text: str) -> None:
    await pilot.press(*text, "enter")
    await pilot.pause()


async def frames_of(peer: Peer, kind: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The next ``count`` frames of type ``kind`` the peer receives (others skipped)."""
    found: list[dict] = []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            frame = json.loads(await peer.ws.recv())
            if frame["type"] == kind:
                found.append(frame)
    return found


async def settle(app: FerApp, pilot: Any) -> None:
    await wait_until(lambda: all(c.pending == 0 for c in app.connections.values()), what="acks")
    await pilot.pause()


async def messages_within(peer: Peer, seconds: float = 0.5) -> list[dict]:
    """The message frames the peer receives in the next ``seconds`` (presence ignored)."""
    return [frame for frame in await peer.drain(seconds) if frame["type"] == "message"]


async def next_presence(peer: Peer, event: str, timeout: float = 10.0) -> dict:
    """The next presence frame of ``event`` (join, leave, nick) the peer receives."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await peer.ws.recv())
            if frame["type"] == "presence" and frame["event"] == event:
                return frame
