"""The real Textual app (Pilot) against a real hub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from client_fixtures import face_frames, free_port, model_path, wait_until

from fer_tui.app import FerApp
from fer_tui.config import Settings
from fer_tui.emotions import LABELS
from fer_tui.pipeline import FrameListSource
from fer_tui.screens import ChatScreen, JoinScreen
from hub.server import HubConfig, serve_hub

pytestmark = pytest.mark.timeout(90)

SIZE = (110, 32)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    async with serve_hub(HubConfig(host="127.0.0.1", port=0)) as running:
        yield running.url


def make_app(url: str | None, name: str | None, model: Path, frames=None, **settings) -> FerApp:
    source = FrameListSource(frames, interval=0.05) if frames else None
    base = Settings(
        server=url, room="lobby", name=name, camera="none", model=str(model), threshold=0.0, fps=4.0
    )
    return FerApp(base.merged(settings), frame_source=source, embedded_port=0)


def online(app: FerApp) -> bool:
    return app.connection is not None and app.connection.state == "online"


def texts(app: FerApp) -> list[str]:
    assert app.chat is not None
    return [entry.text for entry in app.chat.log_view.entries]


def entry(app: FerApp, text: str):
    assert app.chat is not None
    return next(e for e in app.chat.log_view.entries if e.text == text)


async def type_and_send(pilot, text: str) -> None:
    await pilot.press(*text, "enter")


async def test_two_clients_send_and_receive_with_tags(hub_url: str, model: Path) -> None:
    frames = face_frames()
    blank = [np.full((240, 320, 3), 90, np.uint8)]
    alice = make_app(hub_url, "alice", model, frames=frames or blank)
    bob = make_app(hub_url, "bob", model)
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await wait_until(lambda: online(alice) and online(bob), what="both online")
        await wait_until(
            lambda: alice.capture is not None and alice.capture.latest is not None,
            what="first analysis",
        )
        await type_and_send(pa, "hello bob")
        sent = entry(alice, "hello bob")
        await wait_until(lambda: "hello bob" in texts(bob), what="bob receives")
        received = entry(bob, "hello bob")
        assert received.user == "alice" and not received.own
        assert received.emotion == sent.emotion  # what alice saw is what went out
        if frames:
            assert sent.emotion is not None and sent.emotion.label in LABELS
        else:
            assert sent.emotion is None and sent.untagged_reason == "no face"
        await wait_until(lambda: not entry(alice, "hello bob").pending, what="ack")
        await type_and_send(pb, "hi alice")
        await wait_until(lambda: "hi alice" in texts(alice), what="alice receives")
        assert entry(alice, "hi alice").emotion is None  # bob has no camera
        assert texts(alice) == texts(bob) == ["hello bob", "hi alice"]
        await pa.pause()
        await pb.pause()


async def test_presence_join_and_leave(hub_url: str, model: Path) -> None:
    alice = make_app(hub_url, "alice", model)
    async with alice.run_test(size=SIZE):
        await wait_until(lambda: online(alice), what="alice online")
        members = lambda: {m.user for m in alice.chat.members.members}  # noqa: E731
        assert members() == {"alice"}
        bob = make_app(hub_url, "bob", model)
        async with bob.run_test(size=SIZE):
            await wait_until(lambda: members() == {"alice", "bob"}, what="bob listed")
            assert {m.user for m in bob.chat.members.members} == {"alice", "bob"}
        await wait_until(lambda: members() == {"alice"}, what="bob gone")


async def test_history_on_join_in_order(hub_url: str, model: Path) -> None:
    alice = make_app(hub_url, "alice", model)
    async with alice.run_test(size=SIZE) as pa:
        await wait_until(lambda: online(alice), what="alice online")
        for text in ("one", "two", "three"):
            await type_and_send(pa, text)
        await wait_until(lambda: alice.connection.pending == 0, what="acks")
        bob = make_app(hub_url, "bob", model)
        async with bob.run_test(size=SIZE):
            await wait_until(lambda: len(texts(bob)) == 3, what="history")
            assert texts(bob) == ["one", "two", "three"]
            assert all(not e.pending for e in bob.chat.log_view.entries)


async def test_tagging_off_sends_no_emotion(hub_url: str, model: Path) -> None:
    frames = face_frames() or [np.full((240, 320, 3), 90, np.uint8)]
    alice = make_app(hub_url, "alice", model, frames=frames)
    bob = make_app(hub_url, "bob", model)
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE):
        await wait_until(lambda: online(alice) and online(bob), what="both online")
        await wait_until(
            lambda: alice.capture is not None and alice.capture.latest is not None,
            what="first analysis",
        )
        await pa.press("ctrl+t")
        assert not alice.tagging and not alice.chat.status.tagging
        await type_and_send(pa, "no tag please")
        await wait_until(lambda: "no tag please" in texts(bob), what="bob receives")
        assert entry(bob, "no tag please").emotion is None
        assert entry(alice, "no tag please").untagged_reason == "tagging off"
        await pa.press("ctrl+t")
        assert alice.tagging


async def test_outbox_survives_a_hub_restart(model: Path) -> None:
    port = free_port()
    config = HubConfig(host="127.0.0.1", port=port)
    url = f"ws://127.0.0.1:{port}"
    alice = make_app(url, "alice", model)
    first = serve_hub(config)
    await first.__aenter__()
    async with alice.run_test(size=SIZE) as pa:
        try:
            await wait_until(lambda: online(alice), what="alice online")
            await type_and_send(pa, "before")
            await wait_until(lambda: alice.connection.pending == 0, what="first ack")
        finally:
            await first.__aexit__(None, None, None)
        await wait_until(lambda: alice.connection.state != "online", what="alice offline")
        await type_and_send(pa, "while offline 1")
        await type_and_send(pa, "while offline 2")
        assert entry(alice, "while offline 1").pending
        assert alice.connection.pending == 2
        await pa.pause()
        assert alice.chat.status.pending == 2
        async with serve_hub(config):
            await wait_until(lambda: alice.connection.pending == 0, what="outbox flushed")
            assert not entry(alice, "while offline 2").pending
            bob = make_app(url, "bob", model)
            async with bob.run_test(size=SIZE):
                await wait_until(lambda: len(texts(bob)) >= 2, what="bob history")
                assert texts(bob) == ["while offline 1", "while offline 2"]
            # Resent after the reconnect, still shown once.
            assert texts(alice) == ["before", "while offline 1", "while offline 2"]


async def test_no_camera_mode_chats_untagged(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "carol", model, camera="none")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        await pilot.pause()
        assert app.capture is None
        assert app.chat.status.camera == "off"
        await type_and_send(pilot, "no camera here")
        await wait_until(lambda: not entry(app, "no camera here").pending, what="ack")
        sent = entry(app, "no camera here")
        assert sent.emotion is None and sent.untagged_reason == "camera off"


async def test_missing_camera_is_a_status_not_a_crash(
    hub_url: str, model: Path, tmp_path: Path
) -> None:
    settings = Settings(
        server=hub_url,
        room="lobby",
        name="dan",
        model=str(model),
        camera=str(tmp_path / "no-such-video.mp4"),
    )
    app = FerApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        await wait_until(lambda: "not found" in app.chat.status.camera, what="camera status")
        await type_and_send(pilot, "still chatting")
        await wait_until(lambda: not entry(app, "still chatting").pending, what="ack")


async def test_join_screen_asks_for_name_and_room(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, None, model, room="")
    app.room = ""
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, JoinScreen)
        await pilot.press("enter", "enter")  # empty name: refused
        assert isinstance(app.screen, JoinScreen)
        await pilot.click("#name")
        await pilot.press(*"erin", "enter")
        await pilot.press(*"garden", "enter")
        await wait_until(
            lambda: isinstance(app.screen, ChatScreen) and online(app), what="chat screen"
        )
        assert (app.user, app.room) == ("erin", "garden")


async def test_embedded_hub_without_server(model: Path) -> None:
    app = make_app(None, "solo", model)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        assert app.hub_url is not None and app.hub_url.startswith("ws://127.0.0.1:")
        notices = app.chat.log_view.notices
        assert any("started a local hub" in n for n in notices)
        await type_and_send(pilot, "talking to myself")
        await wait_until(lambda: not entry(app, "talking to myself").pending, what="ack")


async def test_preview_toggle_and_palette_commands(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "fay", model)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        assert app.chat.preview.display
        await pilot.press("ctrl+o")
        assert not app.chat.preview.display
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Toggle tagging" in titles and "Toggle preview" in titles
        await pilot.press("ctrl+o")
        assert app.chat.preview.display


async def test_history_from_someone_who_left_does_not_list_them(hub_url: str, model: Path) -> None:
    alice = make_app(hub_url, "alice", model)
    async with alice.run_test(size=SIZE) as pa:
        await wait_until(lambda: online(alice), what="alice online")
        await type_and_send(pa, "bye all")
        await wait_until(lambda: alice.connection.pending == 0, what="ack")
    bob = make_app(hub_url, "bob", model)
    async with bob.run_test(size=SIZE):
        await wait_until(lambda: texts(bob) == ["bye all"], what="history")
        assert {m.user for m in bob.chat.members.members} == {"bob"}
