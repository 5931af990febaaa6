"""Every slash command in the real app (Pilot) against a real hub on 127.0.0.1.

The other members are plain websockets peers speaking the protocol, so each
test also shows what really went over the wire.
"""

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
    next_presence,
    notices,
    online,
    settle,
    type_line,
)
from client_fixtures import model_path, wait_until
from hub_fixtures import Peer, hub

from fer_tui.buffers import direct_key
from fer_tui.commands import COMMANDS

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    async with hub() as running:
        yield running.url


async def test_me_sends_an_action_without_the_slash(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await type_line(pilot, "/me waves at everyone")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["text"] == "waves at everyone" and frame["action"] is True
        await settle(app, pilot)
        (entry,) = log_entries(app)
        assert entry.action and entry.text == "waves at everyone" and not entry.pending
        assert app.chat.message_input.value == ""


async def test_unknown_command_is_a_notice_and_never_sent(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await type_line(pilot, "/frobnicate the build")
        assert any("unknown command /frobnicate" in n for n in notices(app))
        assert app.chat.message_input.value == "/frobnicate the build"  # kept to fix it
        assert app.connection.pending == 0 and log_texts(app) == []
        assert await messages_within(bob) == []
        await pilot.press("ctrl+u")
        await type_line(pilot, "//frobnicate is a slash command")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["text"] == "/frobnicate is a slash command"
        assert frame.get("action", False) is False


async def test_msg_goes_to_one_member_only_in_its_own_buffer(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with (
        Peer.open(hub_url) as bob,
        Peer.open(hub_url) as carol,
        app.run_test(size=SIZE) as pilot,
    ):
        await bob.join("lobby", "bob")
        await carol.join("lobby", "carol")
        await wait_until(
            lambda: online(app) and len(app.buffers.get("lobby").members) == 3, what="members"
        )
        await type_line(pilot, "/msg bob the secret is 42")
        (frame,) = await frames_of(bob, "message", 1)
        assert frame["to"] == "bob" and frame["text"] == "the secret is 42"
        await settle(app, pilot)
        key = direct_key("lobby", "bob")
        assert app.buffers.current_key == key  # /msg shows the conversation
        assert log_texts(app, key) == ["the secret is 42"]
        assert log_entries(app, key)[0].direct
        assert log_texts(app, "lobby") == []
        await bob.send({"type": "message", "id": "r1", "text": "thanks", "to": "ada"})
        await wait_until(lambda: "thanks" in log_texts(app, key), what="reply in the buffer")
        assert log_texts(app, "lobby") == []
        assert await messages_within(carol) == []  # carol saw neither
        # To someone absent: refused here, nothing sent.
        await type_line(pilot, "/msg nobody hello?")
        assert any("nobody called nobody" in n for n in notices(app))
        assert app.connection.pending == 0
        await pilot.press("ctrl+u", "alt+2")  # the refused line was kept; the @bob buffer
        assert app.buffers.current_key == key
        await type_line(pilot, "/part")  # closes the conversation, not the room
        assert app.buffers.get(key) is None and app.buffers.current_key == "lobby"
        assert online(app, "lobby")


async def test_incoming_direct_message_opens_a_buffer_and_rings(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        await bob.join("lobby", "bob")
        await wait_until(lambda: len(app.buffers.get("lobby").members) == 2, what="bob in")
        await bob.send({"type": "message", "id": "d1", "text": "psst", "to": "ada"})
        key = direct_key("lobby", "bob")
        await wait_until(lambda: app.buffers.get(key) is not None, what="buffer opened")
        await pilot.pause()
        assert app.buffers.current_key == "lobby"  # not stolen from what you read
        assert app.buffers.get(key).unread == 1 and app.bells == 1
        await wait_until(lambda: "@bob 1 @" in str(app.chat.rooms.render()), what="listed")


async def test_nick_renames_everywhere(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await type_line(pilot, "/nick lovelace")
        frame = await next_presence(bob, "nick")
        assert (frame["event"], frame["old"], frame["user"]) == ("nick", "ada", "lovelace")
        await wait_until(lambda: app.user == "lovelace", what="renamed")
        assert app.connection.user == "lovelace"
        assert {m.user for m in app.chat.members.members} == {"lovelace", "bob"}
        assert any("ada is now known as lovelace" in n for n in notices(app))
        await type_line(pilot, "/nick bob")  # taken: refused, the connection stays
        await wait_until(
            lambda: any("refused" in n for n in notices(app)), what="name_taken notice"
        )
        assert online(app) and app.user == "lovelace"


async def test_topic_set_shown_and_sent_on_join(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await type_line(pilot, "/topic")
        assert any("no topic is set" in n for n in notices(app))
        await type_line(pilot, "/topic Release on Friday")
        (frame,) = await frames_of(bob, "topic", 1)
        assert (frame["topic"], frame["user"]) == ("Release on Friday", "ada")
        await wait_until(lambda: app.buffers.get("lobby").topic == "Release on Friday", what="t")
        await pilot.pause()
        assert "Release on Friday" in str(app.chat.query_one("#topic").render())
        async with Peer.open(hub_url) as carol:
            joined = await carol.join("lobby", "carol")
            assert joined["topic"] == "Release on Friday"


async def test_who_clear_help_and_quit(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        await type_line(pilot, "/who")
        assert any(n.endswith("2 in lobby: ada, bob") for n in notices(app)), notices(app)
        await type_line(pilot, "before clear")
        await settle(app, pilot)
        await type_line(pilot, "/clear")
        assert log_texts(app) == [] and notices(app) == []
        await type_line(pilot, "/help")
        shown = notices(app)
        for spec in COMMANDS:
            assert any(spec.usage in line for line in shown), spec.name
        await type_line(pilot, "/quit")
        await wait_until(lambda: not app.is_running, what="app exited")


async def test_direct_message_to_someone_who_left_is_not_delivered(
    hub_url: str, model: Path
) -> None:
    app = make_app(hub_url, "ada", model)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: online(app), what="online")
        async with Peer.open(hub_url) as bob:
            await bob.join("lobby", "bob")
            await bob.send({"type": "message", "id": "d1", "text": "bye soon", "to": "ada"})
            key = direct_key("lobby", "bob")
            await wait_until(lambda: app.buffers.get(key) is not None, what="buffer")
        await wait_until(lambda: len(app.buffers.get("lobby").members) == 1, what="bob left")
        await pilot.press("alt+2")  # the conversation stays open after bob left
        assert app.buffers.current_key == key
        await type_line(pilot, "still there?")
        await wait_until(lambda: app.connection.pending == 0, what="the refusal")
        await wait_until(
            lambda: log_texts(app, key)[-1] == "still there?  ✗ not delivered", what="marked"
        )
        assert not log_entries(app, key)[-1].pending
        assert any("refused" in n for n in notices(app, key))
