"""Privacy: during a chat with the camera on, no image data leaves the client or hits the disk.

Every frame the client sends goes through a recording proxy on 127.0.0.1 in
front of a real hub; each one is checked against the protocol's client shapes
(join, message with its action/direct/picked variants, nick, topic, history).
The session uses the commands that make those frames: a second room, ``/me``,
``/msg``, ``/topic``, ``/nick`` and a hand-picked label. An audit hook records
every file opened for writing and every socket the process connects to while
the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from client_chat import online
from client_fixtures import face_frames, model_path, wait_until
from hub_fixtures import Peer
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from fer_tui.app import FerApp
from fer_tui.config import Settings
from fer_tui.emotions import LABELS
from fer_tui.pipeline import FrameListSource
from hub.server import HubConfig, serve_hub

pytestmark = pytest.mark.timeout(90)

JOIN_KEYS = {"type", "room", "user", "since", "token", "session"}
MESSAGE_KEYS = {"type", "id", "text", "emotion"}
#: What is typed, in order: lines, and keys ("alt+e" then picks "happy").
TYPED = [
    "hello there",
    "/join r2",
    "how are you today?",
    "alt+1",
    "/me waves at the camera",
    "/msg bob a slightly longer message, to be sure",
    "alt+1",
    "alt+e",
    "picked by hand",
    "/topic privacy check",
    "/nick alicia",
    "after the rename",
]
#: The texts of the message frames those lines make.
SENT = [
    "hello there",
    "how are you today?",
    "waves at the camera",
    "a slightly longer message, to be sure",
    "picked by hand",
    "after the rename",
]
BASE64ISH = re.compile(r"[A-Za-z0-9+/=_-]{64,}")

_recording: dict[str, list] | None = None


def _audit(event: str, args: tuple) -> None:
    if _recording is None:
        return
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writes and isinstance(path, (str, bytes, os.PathLike)):
            name = os.fsdecode(path)
            if name != os.devnull:  # the classifier mutes the runtime's C++ logging there
                _recording["writes"].append(name)
    elif event == "socket.connect":
        _recording["connects"].append(args[1])


sys.addaudithook(_audit)


@contextlib.contextmanager
def recording() -> dict[str, list]:
    global _recording
    _recording = {"writes": [], "connects": []}
    try:
        yield _recording
    finally:
        _recording = None


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str, frames: list) -> AsyncIterator[str]:
    """A websocket proxy that records every client → hub frame, text or binary, any size."""

    async def handle(client: ServerConnection) -> None:
        async with connect(upstream, max_size=None) as hub:

            async def client_to_hub() -> None:
                async for frame in client:
                    frames.append(frame)
                    await hub.send(frame)

            async def hub_to_client() -> None:
                async for frame in hub:
                    await client.send(frame)

            tasks = [asyncio.create_task(client_to_hub()), asyncio.create_task(hub_to_client())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    async with serve(handle, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def check_frame(raw: str | bytes) -> dict:
    """Assert ``raw`` is one of the small client shapes with no room for pixels."""
    assert isinstance(raw, str), "binary frame sent"
    assert len(raw.encode()) <= 1024, f"frame of {len(raw)} bytes"
    frame = json.loads(raw)
    kind = frame["type"]
    if kind == "join":
        assert set(frame) == JOIN_KEYS
    elif kind == "nick":
        assert set(frame) == {"type", "user"} and frame["user"] == "alicia"
    elif kind == "topic":
        assert set(frame) == {"type", "topic"} and frame["topic"] == "privacy check"
    elif kind == "history":
        assert set(frame) == {"type", "before", "limit"}
        assert all(isinstance(frame[k], int) for k in ("before", "limit") if frame[k] is not None)
    else:
        assert kind == "message"
        assert MESSAGE_KEYS <= set(frame) <= MESSAGE_KEYS | {"action", "to"}
        assert frame["text"] in SENT
        assert frame.get("action", True) is True and frame.get("to", "bob") == "bob"
        assert re.fullmatch(r"[0-9a-f]{32}", frame["id"])
        emotion = frame["emotion"]
        if emotion is not None:
            assert set(emotion) in ({"label", "confidence"}, {"label", "confidence", "picked"})
            assert emotion["label"] in LABELS
            assert isinstance(emotion["confidence"], float)
            assert emotion.get("picked", True) is True
    for key, value in frame.items():
        assert not isinstance(value, (list, dict)) or key == "emotion", key
        if isinstance(value, str) and key != "text":
            assert len(value) <= 64 and not BASE64ISH.search(value), key
    return frame


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
def isolated_dirs(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("TMPDIR", str(home / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(home / "tmp"))
    monkeypatch.chdir(home)
    return home


async def run_session(model: Path, debug_dir: Path | None = None):
    frames = face_frames(("neutral_woman.jpg", "obama_320x240.jpg", "happy_baby.jpg"))
    real = bool(frames)
    frames = frames or [np.full((240, 320, 3), 90, np.uint8)]
    sent: list = []
    async with (
        serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub,
        recording_proxy(hub.url, sent) as proxy_url,
    ):
        settings = Settings(
            server=proxy_url,
            room="lobby",
            name="alice",
            model=str(model),
            threshold=0.0,
            fps=4.0,
            debug_dir=str(debug_dir) if debug_dir else None,
        )
        app = FerApp(settings, frame_source=FrameListSource(frames, interval=0.05))
        with recording() as seen:
            async with Peer.open(hub.url) as bob, app.run_test(size=(100, 30)) as pilot:
                await bob.join("lobby", "bob")  # straight to the hub: /msg needs a recipient
                await wait_until(
                    lambda: app.connection is not None and app.connection.state == "online",
                    what="online",
                )
                await wait_until(
                    lambda: app.capture is not None and app.capture.frames_analysed >= 3,
                    what="camera running",
                )
                for text in TYPED:
                    if text.startswith("alt+"):
                        await pilot.press(text)
                        await pilot.pause()
                        if text == "alt+e":
                            await pilot.press("down", "down", "down", "enter")  # happy
                        continue
                    await pilot.press(*text, "enter")
                    await asyncio.sleep(0.3)  # let the camera move on to another photo
                    if text == "/join r2":
                        await wait_until(lambda: online(app, "r2"), what="r2 online")
                await wait_until(
                    lambda: (
                        all(c.pending == 0 for c in app.connections.values())
                        and app.user == "alicia"
                    ),
                    what="acks and the rename",
                )
                analysed = app.capture.frames_analysed
        # The client may talk to the proxy; the proxy (in this process) to the hub.
        allowed = {("127.0.0.1", int(url.rsplit(":", 1)[1])) for url in (proxy_url, hub.url)}
    return real, sent, seen, analysed, allowed


async def test_hub_receives_no_image_data_and_nothing_is_written(
    model: Path, isolated_dirs: Path
) -> None:
    real, sent, seen, analysed, allowed = await run_session(model)
    assert analysed >= 3  # the camera really ran during the session
    frames = [check_frame(raw) for raw in sent]
    messages = [f for f in frames if f["type"] == "message"]
    kinds = [f["type"] for f in frames]
    assert kinds.count("join") == 2 and kinds.count("nick") == 2  # lobby and r2
    assert kinds.count("topic") == 1
    assert [m["text"] for m in messages] == SENT
    assert [m.get("action", False) for m in messages].count(True) == 1
    assert [m.get("to") for m in messages].count("bob") == 1
    assert [m["emotion"] for m in messages if m["text"] == "picked by hand"] == [
        {"label": "happy", "confidence": 1.0, "picked": True}
    ]
    if real:  # real faces: the emotion, and only the emotion, went out
        assert all(m["emotion"] is not None for m in messages)
    assert seen["writes"] == []
    assert list(isolated_dirs.iterdir()) == []
    assert seen["connects"], "audit hook saw no connection"
    assert {tuple(address) for address in seen["connects"]} <= allowed


async def test_debug_dir_is_the_only_way_to_write_images(
    model: Path, isolated_dirs: Path, tmp_path: Path
) -> None:
    debug = tmp_path / "debug"
    _, sent, seen, _, _ = await run_session(model, debug_dir=debug)
    for raw in sent:
        check_frame(raw)
    # The audit hook does see writes: here every one of them is in the debug folder.
    assert seen["writes"], "audit hook saw no writes even with --debug-dir"
    assert all(Path(p).parent == debug for p in seen["writes"]), seen["writes"]
    assert len(list(debug.glob("*_frame.jpg"))) == len(SENT)
