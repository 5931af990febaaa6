"""Several rooms in one real app (Pilot) on a real hub: joining, parting, switching keys,
unread counts, mentions and highlights, resume of every room, older history on scroll."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_chat import (
    SIZE,
    frames_of,
    log_entries,
    log_texts,
    make_app,
    next_presence,
    notices,
    online,
    settle,
    type_line,
)
from client_fixtures import free_port, model_path, wait_until
from hub_fixtures import Peer, hub

from fer_tui.buffers import HIGHLIGHTS
from hub import protocol
from hub.server import HubConfig, serve_hub

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    async with hub() as running:
        yield running.url


def rendered(log) -> str:
    """The log's lines as drawn on screen now."""
    return "\n".join(log.render_line(y).text for y in range(log.size.height))


def titles(app) -> list[str]:
    return [buffer.title for buffer in app.buffers]


async def test_join_switch_and_part(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("r2", "bob")
        await wait_until(lambda: online(app, "lobby"), what="lobby online")
        await type_line(pilot, "/join r2")
        frame = await next_presence(bob, "join")
        assert frame["user"] == "ada"
        await wait_until(lambda: online(app, "r2"), what="r2 online")
        assert titles(app) == ["lobby", "r2", "highlights"] and app.buffers.current_key == "r2"
        assert app.connections["r2"] is not app.connections["lobby"]  # one per room
        await type_line(pilot, "in r2")
        await settle(app, pilot)
        await pilot.press("alt+1")
        assert app.buffers.current_key == "lobby" and log_texts(app) == []
        await pilot.press("ctrl+n")
        assert app.buffers.current_key == "r2" and log_texts(app) == ["in r2"]
        await pilot.press("ctrl+n")
        assert app.buffers.current_key == HIGHLIGHTS
        await pilot.press("ctrl+p", "ctrl+p")
        assert app.buffers.current_key == "lobby"
        await pilot.press("alt+2")
        assert app.buffers.current_key == "r2"
        await type_line(pilot, "/join lobby")  # joined already: just shown
        assert app.buffers.current_key == "lobby" and len(app.connections) == 2
        await type_line(pilot, "/part r2")
        frame = await next_presence(bob, "leave")
        assert frame["user"] == "ada"
        assert titles(app) == ["lobby", "highlights"] and set(app.connections) == {"lobby"}
        await type_line(pilot, "/part")
        assert titles(app) == ["highlights"]
        assert any("in no room" in n for n in notices(app))


async def test_unread_mentions_highlights_and_bell(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model, room="r1")
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE) as pilot:
        await bob.join("r2", "bob")
        await wait_until(lambda: online(app, "r1"), what="r1 online")
        await type_line(pilot, "/join r2")
        await wait_until(lambda: online(app, "r2"), what="r2 online")
        await pilot.press("alt+1")  # read r1 while bob talks in r2
        await bob.say("m1", "is anyone here?")
        await bob.say("m2", "ping ADA, the build is red")
        await bob.say("m3", "adam knows")  # not a mention
        await wait_until(lambda: app.buffers.get("r2").unread == 3, what="unread")
        r2 = app.buffers.get("r2")
        assert r2.mentions == 1 and app.bells == 1
        await wait_until(lambda: "r2 3 @" in str(app.chat.rooms.render()), what="marked")
        assert log_texts(app, HIGHLIGHTS) == ["[r2] ping ADA, the build is red"]
        await pilot.press("alt+h")
        assert app.buffers.current_key == HIGHLIGHTS
        await pilot.click("#rooms", offset=(3, 2))  # the second line: r2
        assert app.buffers.current_key == "r2"
        assert (r2.unread, r2.mentions) == (0, 0)
        await pilot.pause()
        shown = rendered(app.chat.log_view)  # laid out although it arrived while hidden
        assert "ping ADA, the build is red" in shown and "adam knows" in shown
        mention = next(e for e in log_entries(app) if e.id == "m2")
        assert mention.mention
        assert not [w for w in app.written if w.startswith(("\x1b]9;", "\x1b]777;"))]  # opt-in


async def test_desktop_notification_where_supported(
    hub_url: str, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM_PROGRAM", "WezTerm")
    app = make_app(hub_url, "ada", model, desktop_notify=True, bell=False)
    async with Peer.open(hub_url) as bob, app.run_test(size=SIZE):
        await bob.join("lobby", "bob")
        await wait_until(lambda: online(app), what="online")
        # The hub refuses an escape in text (control_char); notification_sequence's
        # own stripping, for an older or hostile hub, has its unit test.
        await bob.say("m0", "ada: lunch?\x1b]9;spoof\x07")
        await bob.expect_error("control_char")
        await bob.say("m1", "ada: lunch?")
        await wait_until(lambda: app.notifications_sent == 1, what="notification")
        assert app.bells == 0
        sequence = next(w for w in app.written if w.startswith("\x1b]9;"))
        assert sequence.startswith("\x1b]9;bob (lobby): ada: lunch?")
        assert sequence.count("\x1b") == 2  # its own start and end only


async def test_reconnect_resumes_every_room(model: Path, tmp_path: Path) -> None:
    port = free_port()
    config = HubConfig(host="127.0.0.1", port=port, history_db=tmp_path / "history.db")
    url = f"ws://127.0.0.1:{port}"
    app = make_app(url, "ada", model)
    first = serve_hub(config)
    await first.__aenter__()
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_until(lambda: online(app, "lobby"), what="lobby online")
            await type_line(pilot, "/join r2")
            await wait_until(lambda: online(app, "r2"), what="r2 online")
            await type_line(pilot, "r2 before")
            await pilot.press("alt+1")
            await type_line(pilot, "lobby before")
            await settle(app, pilot)
        finally:
            await first.__aexit__(None, None, None)
        await wait_until(
            lambda: not online(app, "lobby") and not online(app, "r2"), what="both offline"
        )
        await type_line(pilot, "lobby offline")
        await pilot.press("alt+2")
        await type_line(pilot, "r2 offline")
        assert app.connections["lobby"].pending == app.connections["r2"].pending == 1
        async with serve_hub(config), Peer.open(url) as bob, Peer.open(url) as carol:
            await bob.join("lobby", "bob")
            await carol.join("r2", "carol")
            await bob.say("b1", "lobby from bob")
            await carol.say("c1", "r2 from carol")
            await wait_until(
                lambda: len(log_texts(app, "lobby")) == 3 and len(log_texts(app, "r2")) == 3,
                what="both rooms resumed",
            )
            await settle(app, pilot)
            assert sorted(log_texts(app, "lobby")) == sorted(
                ["lobby before", "lobby offline", "lobby from bob"]
            )
            assert sorted(log_texts(app, "r2")) == sorted(
                ["r2 before", "r2 offline", "r2 from carol"]
            )
            assert log_texts(app, "lobby")[0] == "lobby before"


async def test_scrolling_to_the_top_fetches_older_messages(model: Path) -> None:
    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, history_size=5, rate_burst=40)
    async with hub(limits=limits) as running, Peer.open(running.url) as bob:
        await bob.join("lobby", "bob")
        for n in range(30):
            await bob.say(f"old{n}", f"old message {n}")
        await frames_of(bob, "message", 30)
        app = make_app(running.url, "ada", model)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(log_texts(app)) == 5, what="join history")
            assert log_texts(app)[0] == "old message 25"
            app.chat.log_view.scroll_home(animate=False)
            app.chat.log_view.post_message(app.chat.log_view.ReachedTop(app.chat.log_view, None))
            await wait_until(lambda: len(log_texts(app)) == 30, what="older pages")
            await pilot.pause()
            assert log_texts(app) == [f"old message {n}" for n in range(30)]
            await wait_until(lambda: app.buffers.get("lobby").history_complete, what="the end")


async def test_commands_across_two_hubs_on_redis(model: Path, tmp_path: Path) -> None:
    """ada on hub A, bob on hub B, one redis-server: rooms, DMs, topic, nick and mentions."""
    from redis_fixtures import redis_server

    with redis_server(tmp_path) as redis:
        config = {"host": "127.0.0.1", "port": 0, "redis_url": redis.url, "redis_heartbeat": 0.2}
        async with serve_hub(HubConfig(**config)) as a, serve_hub(HubConfig(**config)) as b:
            app = make_app(a.url, "ada", model)
            async with (
                Peer.open(b.url) as bob,
                Peer.open(b.url) as bob_r2,
                app.run_test(size=SIZE) as pilot,
            ):
                await bob.join("lobby", "bob")
                await bob_r2.join("r2", "bob")
                await wait_until(
                    lambda: online(app) and len(app.buffers.get("lobby").members) == 2,
                    what="bob listed from the other hub",
                )
                await type_line(pilot, "/join r2")
                await wait_until(lambda: online(app, "r2"), what="r2 online")
                await pilot.press("alt+1")
                await bob_r2.say("m1", "ada, r2 needs you")
                await wait_until(lambda: app.buffers.get("r2").mentions == 1, what="mention")
                assert log_texts(app, HIGHLIGHTS) == ["[r2] ada, r2 needs you"]
                await type_line(pilot, "/msg bob across hubs")
                (frame,) = await frames_of(bob, "message", 1)
                assert (frame["to"], frame["text"]) == ("bob", "across hubs")
                later = await bob_r2.drain(0.3)  # bob's r2 connection: not the DM's room
                assert not [f for f in later if f["type"] == "message" and f["id"] != "m1"]
                await pilot.press("alt+1")
                await type_line(pilot, "/topic shared by redis")
                (frame,) = await frames_of(bob, "topic", 1)
                assert frame["topic"] == "shared by redis"
                await type_line(pilot, "/nick lovelace")
                frame = await next_presence(bob, "nick")
                assert (frame["old"], frame["user"]) == ("ada", "lovelace")
                await wait_until(lambda: app.user == "lovelace", what="renamed")
                await settle(app, pilot)


async def test_rooms_setting_joins_several_at_start(hub_url: str, model: Path) -> None:
    app = make_app(hub_url, "ada", model, rooms="ops, random")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            lambda: all(online(app, room) for room in ("lobby", "ops", "random")), what="online"
        )
        assert titles(app) == ["lobby", "ops", "random", "highlights"]
        assert app.buffers.current_key == "lobby"
        await pilot.press("alt+3")
        assert app.buffers.current_key == "random"
