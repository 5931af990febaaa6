"""Wire strings are inert on the terminal: the sanitiser, the widgets, the whole screen.

A hostile relay (tests/hostile_relay.py) between a real hub and the real app
adds OSC 0/52/8, CSI 2J, a C1 CSI, a bidi override and Rich markup to every
string the hub sends; nothing of it may reach a rendered segment.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from client_fixtures import model_path, wait_until
from hostile_relay import HOSTILE_TEXT, OSC_TITLE, HostileRelay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.segment import Segment
from textual.app import App, ComposeResult

from fer_tui.app import FerApp
from fer_tui.config import Settings
from fer_tui.connection import HubError, JoinedRoom, PresenceChanged, StateChanged
from fer_tui.inert import inert, inert_text, is_inert
from fer_tui.widgets.member_list import MemberList, format_members
from fer_tui.widgets.message_log import LogEntry, MessageLog, format_entry, format_notice
from fer_tui.widgets.status_bar import StatusBar
from hub.protocol import Emotion, ErrorFrame, Joined, Member, Presence
from hub.server import HubConfig, serve_hub

pytestmark = pytest.mark.timeout(120)

#: What must never reach the terminal: C0 (newline splits lines, so none at all in a
#: segment), DEL, C1, bidi overrides/isolates, line separators, lone surrogates.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

#: Every code point, surrogates included (JSON can carry "\ud800").
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
CONTROL_HEAVY = st.text(
    st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x9F),
        st.sampled_from("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.sampled_from("[bold]x[/bold]🙂e\u0301"),
    ),
    max_size=60,
)
WIRE_TEXT = st.one_of(ANY_TEXT, CONTROL_HEAVY)


def unsafe_in(segments: Iterable[Segment]) -> list[str]:
    return [seg.text for seg in segments if UNSAFE.search(seg.text)]


def rendered(renderable: object, width: int = 60) -> list[Segment]:
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    lines = console.render_lines(renderable, console.options, pad=False)  # type: ignore[arg-type]
    return [segment for line in lines for segment in line]


# --- the sanitiser ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;PWNED\x07", "^[]0;PWNED^G"),
        ("\x1b[2J\x1b[HCLEARED", "^[[2J^[[HCLEARED"),
        ("a\x7fb", "a^?b"),
        ("\x9b31m", "\\x9b31m"),
        ("\u202egnp.exe", "<U+202E>gnp.exe"),
        ("x\u2066y\u2069", "x<U+2066>y<U+2069>"),
        ("\ud800", "\ufffd"),
        ("two\nlines", "two^Jlines"),
        ("[bold]not markup[/]", "[bold]not markup[/]"),
        ("café 🙂 日本", "café 🙂 日本"),
    ],
)
def test_inert_shows_controls_visibly(raw: str, shown: str) -> None:
    assert inert(raw) == shown


def test_multiline_keeps_newlines_and_turns_tabs_into_spaces() -> None:
    assert inert("a\nb\tc\rd", multiline=True) == "a\nb c^Md"


def test_inert_text_styles_replacements_and_never_reads_markup() -> None:
    text = inert_text("[red]x[/red]\x1b")
    assert text.plain == "[red]x[/red]^["
    assert [(s.start, s.end) for s in text.spans] == [(12, 14)]  # the caret pair, reversed


@given(WIRE_TEXT)
def test_inert_output_is_inert_and_stable(raw: str) -> None:
    shown = inert(raw)
    assert is_inert(shown)
    assert inert(shown) == shown
    assert UNSAFE.search(shown) is None
    # The line is still shown: every run of safe characters survives, in order.
    position = 0
    for run in UNSAFE.split(raw):
        found = shown.find(run, position)
        assert found >= 0, (run, shown)
        position = found + len(run)
    if is_inert(raw):
        assert shown == raw


@given(WIRE_TEXT)
def test_multiline_output_holds_no_control_but_newline(raw: str) -> None:
    shown = inert(raw, multiline=True)
    assert UNSAFE.search(shown.replace("\n", "")) is None


# --- the widgets' renderings ----------------------------------------------------


@given(
    user=WIRE_TEXT, text=WIRE_TEXT, reason=st.one_of(st.none(), WIRE_TEXT), flags=st.integers(0, 15)
)
def test_rendered_rows_hold_no_control(
    user: str, text: str, reason: str | None, flags: int
) -> None:
    entry = LogEntry(
        "id",
        user,
        text,
        Emotion("happy", 0.5) if flags & 1 else None,
        0.0,
        untagged_reason=reason,
        action=bool(flags & 2),
        mention=bool(flags & 4),
        direct=bool(flags & 8),
    )
    assert unsafe_in(rendered(format_entry(entry))) == []
    assert unsafe_in(rendered(format_notice(f"{user} joined {text}"))) == []
    members = [Member(user, None), Member(text, Emotion("sad", 0.4))]
    assert unsafe_in(rendered(format_members(members, user))) == []


class WidgetsApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MessageLog(id="log")
        yield MemberList("me", id="members")
        yield StatusBar(id="status")


async def screen_unsafe(app: App[object]) -> list[str]:
    """Unsafe text in what the compositor would write to the terminal now."""
    await asyncio.sleep(0)
    return [
        segment.text
        for strip in app.screen._compositor.render_strips()
        for segment in strip
        if UNSAFE.search(segment.text)
    ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user=WIRE_TEXT, text=WIRE_TEXT, room=WIRE_TEXT)
def test_real_widgets_on_screen_hold_no_control(user: str, text: str, room: str) -> None:
    async def run() -> list[str]:
        app = WidgetsApp()
        async with app.run_test(size=(70, 20)) as pilot:
            log = app.query_one(MessageLog)
            log.add_entry(LogEntry("1", user, text, Emotion("angry", 0.7), 0.0))
            log.add_notice(f"joined {room} as {user}")
            app.query_one(MemberList).set_members([Member(user, None)])
            status = app.query_one(StatusBar)
            status.room, status.detail, status.connection = room, text, user
            await pilot.pause()
            log.flush()
            await pilot.pause()
            return await screen_unsafe(app)

    assert asyncio.run(run()) == []


# --- the real app -----------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_path(tmp_path_factory)


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with (
        serve_hub(HubConfig(host="127.0.0.1", port=0)) as hub,
        HostileRelay(hub.url) as relay,
    ):
        yield relay.url


def client(url: str, name: str, model: Path) -> FerApp:
    base = Settings(server=url, room="lobby", name=name, camera="none", model=str(model))
    return FerApp(base, frame_source=None, embedded_port=0)


async def test_hostile_relay_reaches_no_terminal_cell(relay_url: str, model: Path) -> None:
    """Two real clients through the rewriting relay: every string arrives hostile."""
    ada, bob = client(relay_url, "ada", model), client(relay_url, "bob", model)
    async with ada.run_test(size=(110, 32)) as pilot_a, bob.run_test(size=(110, 32)) as pilot_b:
        await wait_until(lambda: bob.chat is not None and len(bob.chat.members.members) == 2)
        await pilot_a.press(*"hello bob", "enter")
        assert bob.chat is not None
        await wait_until(lambda: any("hello bob" in e.text for e in bob.chat.log_view.entries))
        received = next(e for e in bob.chat.log_view.entries if "hello bob" in e.text)
        assert HOSTILE_TEXT in received.text  # the relay did its work
        await pilot_b.pause(0.1)
        bob.chat.log_view.flush()
        await pilot_b.pause()
        assert await screen_unsafe(bob) == []
        shown = "\n".join(s.text for s in bob.screen._compositor.render_strips())
        assert "PWNED^G" in shown and "markup[/]" in shown  # shown, inert (wrapped anywhere)
        assert "^[]0;PWNED^G" in shown.split("Members")[1]  # names in the member list too
        assert await screen_unsafe(ada) == []


async def test_hostile_events_of_every_kind(model: Path) -> None:
    """Joined, presence, hub errors and connection details, fed straight to the app."""
    app = client("ws://hub.invalid:1", "ada", model)
    app.run_connection = lambda: None  # type: ignore[method-assign]
    evil = HOSTILE_TEXT
    async with app.run_test(size=(110, 32), notifications=True) as pilot:
        await wait_until(lambda: app.chat is not None and app.chat.is_mounted)
        members = (Member("ada", None), Member(f"eve{evil}", Emotion("happy", 0.9)))
        app._on_hub_event(app.room, StateChanged("connecting", f"hub said: {OSC_TITLE}"))
        app._on_hub_event(app.room, JoinedRoom(Joined(f"lobby{evil}", "ada", members, (), 0)))
        app._on_hub_event(app.room, PresenceChanged(Presence("join", f"eve{evil}", members)))
        app._on_hub_event(app.room, HubError(ErrorFrame(f"bad{evil}", f"refused: {evil}")))
        await wait_until(lambda: bool(app.screen.query("Toast")), what="the toast")
        await pilot.pause(0.5)
        assert app.chat is not None
        app.chat.log_view.flush()
        await pilot.pause()
        assert await screen_unsafe(app) == []
        shown = "\n".join(s.text for s in app.screen._compositor.render_strips())
        toast = app.screen.query_one("Toast")
        assert "refused: ^[]0;PWNED^G" in toast.render().plain  # type: ignore[union-attr]
        assert "refused:" in shown and "bad^[]0;PWNED^G" in shown  # the toast is on screen
        assert "hub said: ^[]0;PWNED^G" in app.chat.status.render().plain  # under the toast
        assert "eve^[]0;PWNED^G" in shown  # log notice and member list
