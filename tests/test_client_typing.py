"""Typing comforts and moods in the real app (Pilot) on a real hub: input history,
Tab completion, multi-line paste, withholding or picking the next tag, mood widgets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_chat import (
    SIZE,
    frames_of,
    log_entries,
    log_texts,
    make_app,
    messages_within,
    online,
    settle,
    type_line,
)
from client_fixtures import model_path, wait_until
from hub_fixtures import Peer, hub
from textual import events

from fer_tui.screens import ConfirmPaste, PickLabel
from hub.protocol import Emotion

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    async with hub() as running:
        yield running.url


async def test_up_and_down_recall_sent_lines(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        field = app.chat.message_input
        await type_line(pilot, "first")
        await type_line(pilot, "/who")
        await pilot.press(*"draft")
        await pilot.press("up")
        assert field.value == "/who"
        await pilot.press("up")
        assert field.value == "first"
        await pilot.press("down", "down")
        assert field.value == "draft"


async def test_tab_completes_commands_and_names(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, Peer.open(hub_url) as bobby:
        await bob.join("lobby", "bob")
        await bobby.join("lobby", "Bobby")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: online(app), what="online")
            await wait_until(lambda: len(app.chat.members.members) == 3, what="members")
            field = app.chat.message_input
            await pilot.press(*"/ms", "tab")
            assert field.value == "/msg "
            await pilot.press("b", "tab")
            assert field.value == "/msg bob "
            await pilot.press("tab")
            assert field.value == "/msg Bobby "
            await pilot.press("ctrl+u", "b", "o", "tab")
            assert field.value == "bob: "  # the start of a message addresses someone
            assert app.chat.message_input.has_focus  # Tab did not move focus


async def test_long_paste_asks_first(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model, paste_confirm_lines=3)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        field = app.chat.message_input
        field.post_message(events.Paste("one line only"))
        await pilot.pause()
        assert field.value == "one line only"  # a single line is just inserted
        await pilot.press("ctrl+u")
        field.post_message(events.Paste("two\nlines"))  # below the limit: sent at once
        await pilot.pause()
        assert [f["text"] for f in await frames_of(bob, "message", 2)] == ["two", "lines"]
        field.post_message(events.Paste("a\nb\n\nc\n/quit"))
        await wait_until(lambda: isinstance(app.screen, ConfirmPaste), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmPaste)
        assert await messages_within(bob) == []
        field.post_message(events.Paste("a\nb\n\nc\n/quit"))
        await wait_until(lambda: isinstance(app.screen, ConfirmPaste), what="the question")
        await pilot.press("y")
        sent = [f["text"] for f in await frames_of(bob, "message", 4)]
        assert sent == ["a", "b", "c", "/quit"]  # pasted lines are text, never commands
        assert app.is_running


async def test_withhold_and_pick_the_next_tag(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await pilot.press("alt+w")
        assert "withheld" in str(app.chat.tag.render())
        await type_line(pilot, "no tag on this one")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["emotion"] is None
        assert log_entries(app)[-1].untagged_reason == "withheld"
        assert "withheld" not in str(app.chat.tag.render())  # for one message only
        await pilot.press("alt+e")
        await wait_until(lambda: isinstance(app.screen, PickLabel), what="label picker")
        await pilot.press("down", "down", "down", "enter")  # angry, disgust, fear, happy
        await pilot.pause()
        assert "happy" in str(app.chat.tag.render()) and "picked" in str(app.chat.tag.render())
        await type_line(pilot, "I say I am happy")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["emotion"] == {"label": "happy", "confidence": 1.0, "picked": True}
        await settle(app, pilot)
        assert log_entries(app)[-1].picked and not log_entries(app)[-1].pending
        await type_line(pilot, "back to the camera")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["emotion"] is None  # no camera in this test: untagged again


async def test_member_moods_and_room_summary(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        for n, label in enumerate(["happy", "happy", "sad", "happy"]):
            await bob.say(f"b{n}", f"message {n}", Emotion(label, 0.8))
        await wait_until(lambda: len(log_texts(app)) == 4, what="messages")
        await pilot.pause()
        lobby = app.buffers.get("lobby")
        assert lobby.moods.last_tags("bob") == ("happy", "happy", "sad", "happy")
        # bob's sparkline: happy, happy, sad, happy; the room: 75 % happy, 25 % sad.
        await wait_until(lambda: "██▃█" in str(app.chat.members.render()), what="sparkline")
        summary = str(app.chat.mood.render())
        assert "😄75%" in summary and "😢25%" in summary, summary
        assert any(m.emotion == Emotion("happy", 0.8) for m in app.chat.members.members)
        await type_line(pilot, "/who")
        await settle(app, pilot)


async def test_palette_moved_to_ctrl_backslash(hub_url: str, model: Path) -> None:
    from textual.command import CommandPalette

    app = make_app(hub_url, "ada", model)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        await pilot.press("ctrl+p")  # steps through the rooms instead
        assert not isinstance(app.screen, CommandPalette)
        await pilot.press("ctrl+backslash")
        await wait_until(lambda: isinstance(app.screen, CommandPalette), what="palette")
