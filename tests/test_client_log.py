"""The virtual message log: rows, acks, bounded scrollback, history above, date lines, search.

Every test runs the real widget in a real Textual app (``run_test``) and reads
what it draws (``render_line``), not its internals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from client_fixtures import REPO
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.widgets import Input

from fer_tui.app import FerApp
from fer_tui.config import ConfigError, Settings
from fer_tui.widgets.message_log import LogEntry, MessageLog, format_entry, wrap_spans
from fer_tui.widgets.nick import nick_style
from fer_tui.widgets.search import SearchBar
from hub.protocol import Emotion

pytestmark = pytest.mark.timeout(60)

T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC
DAY = 86_400.0


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def entry(i: int, text: str | None = None, ts: float | None = None, **flags: object) -> LogEntry:
    return LogEntry(
        f"id{i}",
        ("ada", "grace", "linus")[i % 3],
        f"message {i}" if text is None else text,
        Emotion("happy", 0.9),
        T0 + i if ts is None else ts,
        **flags,  # type: ignore[arg-type]
    )


class LogApp(App[None]):
    def __init__(self, scrollback: int = 100_000) -> None:
        super().__init__()
        self.scrollback = scrollback
        self.reached_top: list[MessageLog.ReachedTop] = []

    def compose(self) -> ComposeResult:
        yield MessageLog(self.scrollback)

    def on_message_log_reached_top(self, event: MessageLog.ReachedTop) -> None:
        self.reached_top.append(event)

    @property
    def log_view(self) -> MessageLog:
        return self.query_one(MessageLog)


def shown(log: MessageLog) -> list[str]:
    """The rows on screen now, as text."""
    return [log.render_line(y).text.rstrip() for y in range(log.size.height)]


async def settle(pilot, log: MessageLog) -> None:
    await pilot.pause()
    log.flush()
    await pilot.pause()


async def test_rows_show_and_an_ack_updates_the_pending_row() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.log_view
        log.add_entry(
            LogEntry(
                "mine",
                "ada",
                "on its way",
                None,
                T0,
                own=True,
                pending=True,
                untagged_reason="no face",
            )
        )
        log.add_entry(entry(1, "hello"))
        assert [e.text for e in log.entries] == ["on its way", "hello"]  # at once, before layout
        await settle(pilot, log)
        rows = shown(log)
        assert rows[0] == "── Thursday 2026-01-01 ──"
        assert "ada" in rows[1] and "untagged (no face)" in rows[1] and "⧗ pending" in rows[1]
        assert "grace" in rows[2] and "😄 happy 90%" in rows[2] and rows[2].endswith("hello")
        log.add_entry(LogEntry("mine", "ada", "on its way", None, T0, own=True))  # the hub's copy
        await settle(pilot, log)
        assert "pending" not in shown(log)[1] and "untagged (no face)" in shown(log)[1]
        assert log.entry("mine") is not None and not log.entry("mine").pending  # type: ignore[union-attr]
        assert len(log.entries) == 2  # updated, not added


async def test_long_and_multiline_text_wraps_and_the_rows_below_move() -> None:
    app = LogApp()
    async with app.run_test(size=(50, 20)) as pilot:
        log = app.log_view
        log.add_entry(entry(1, "word " * 30, own=True, pending=True))
        log.add_entry(entry(2, "first\nsecond"))
        log.add_entry(entry(3, "last"))
        await settle(pilot, log)
        rows = [r for r in shown(log) if r]
        assert rows[-1].endswith("last")
        assert "second" in rows[-2] and "first" in rows[-3]
        height = len(rows)
        log.add_entry(entry(1, "short"))  # its ack: shorter than the pending copy
        await settle(pilot, log)
        rows = [r for r in shown(log) if r]
        assert len(rows) < height and rows[-1].endswith("last")


async def test_scrollback_is_bounded_and_keeps_the_newest_dated() -> None:
    app = LogApp(scrollback=40)
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        for i in range(300):
            log.add_entry(entry(i, ts=T0 + i * 3_600))  # a new date every 24 messages
        log.add_notice("a notice")
        await settle(pilot, log)
        assert log.row_count <= 40
        assert log.entries[-1].id == "id299" and log.entry("id0") is None
        assert shown(log)[-1].endswith("— a notice")
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert shown(log)[0].startswith("── ")  # the oldest row kept still says its date


async def test_a_date_line_when_the_date_changes() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        log.add_entry(entry(1, "late", ts=T0 + 11 * 3600))
        log.add_entry(entry(2, "early", ts=T0 + 13 * 3600))
        log.add_entry(entry(3, "same day", ts=T0 + 14 * 3600))
        await settle(pilot, log)
        rows = [r for r in shown(log) if r]
        assert rows[0] == "── Thursday 2026-01-01 ──" and rows[1].startswith("23:00:00")
        assert rows[2] == "── Friday 2026-01-02 ──" and rows[3].startswith("01:00:00")
        assert rows[4].startswith("02:00:00") and len(rows) == 5


async def test_new_rows_follow_the_end_unless_the_reader_scrolled_up() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        for i in range(100):
            log.add_entry(entry(i))
        await settle(pilot, log)
        assert shown(log)[-1].endswith("message 99")
        log.scroll_to(y=20, animate=False, immediate=True)
        await pilot.pause()
        before = shown(log)
        log.add_entry(entry(100))
        await settle(pilot, log)
        assert shown(log) == before  # reading the scrollback: the view stays put
        log.scroll_end(animate=False, immediate=True)
        log.add_entry(entry(101))
        await settle(pilot, log)
        assert shown(log)[-1].endswith("message 101")


async def test_arrivals_are_laid_out_in_batches() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        flushes = 0
        real_flush = log.flush

        def counted() -> None:
            nonlocal flushes
            flushes += 1
            real_flush()

        log.flush = counted  # type: ignore[method-assign]
        await pilot.pause(0.1)
        flushes = 0
        for i in range(2_000):
            log.add_entry(entry(i))
        assert log.virtual_size.height == 0  # nothing laid out per message...
        await pilot.pause(0.1)
        assert 1 <= flushes <= 2  # ...one batch for the 2,000 (one timer per frame)
        assert shown(log)[-1].endswith("message 1999")


async def test_reaching_the_top_asks_for_history_and_prepend_keeps_the_view() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        for i in range(100, 150):
            log.add_entry(entry(i))
        await settle(pilot, log)
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert len(app.reached_top) == 1 and app.reached_top[0].oldest.id == "id100"  # type: ignore[union-attr]
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert len(app.reached_top) == 1  # not again until answered
        before = shown(log)
        older = [entry(i) for i in range(60, 101)]  # id100 is shown already
        assert log.prepend_entries(older) == 40
        await settle(pilot, log)
        # The messages stay on the same screen rows; the repeated date line went up.
        assert before[0].startswith("── ") and shown(log)[1:] == before[1:]
        assert [e.id for e in log.entries][:2] == ["id60", "id61"] and len(log.entries) == 90
        assert log.row_count == len(log.entries) + 1  # one date line, not two
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert shown(log)[0] == "── Thursday 2026-01-01 ──" and shown(log)[1].endswith("message 60")
        assert len(app.reached_top) == 2


async def test_prepend_respects_the_scrollback_bound() -> None:
    app = LogApp(scrollback=30)
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        for i in range(100, 120):
            log.add_entry(entry(i))
        await settle(pilot, log)
        added = log.prepend_entries([entry(i) for i in range(50, 100)])
        assert 0 < added < 50 and log.row_count <= 30
        assert log.entries[-1].id == "id119"  # the newest stay
        assert log.prepend_entries([entry(i) for i in range(40, 50)]) == 0  # full


async def test_search_highlights_and_steps_through_matches() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        log = app.log_view
        for i in range(200):
            log.add_entry(entry(i, "coffee?" if i % 50 == 7 else f"message {i}"))
        await settle(pilot, log)
        assert log.search("COFFEE") == 4
        assert log.current_match.id == "id157"  # type: ignore[union-attr]  # the newest first
        assert log.previous_match() == 3 and log.current_match.id == "id107"  # type: ignore[union-attr]
        await pilot.pause()
        row = next(y for y in range(log.size.height) if "coffee" in log.render_line(y).text)
        strip = log.render_line(row)
        current = log.get_component_rich_style("message-log--current-match", partial=True)
        highlighted = [s.text for s in strip if s.style and s.style.bgcolor == current.bgcolor]
        assert "".join(highlighted) == "coffee"
        assert log.next_match() == 4 and log.next_match() == 1  # wraps around
        log.clear_search()
        await pilot.pause()
        assert log.match_count == 0


def test_rendering_of_actions_picks_direct_messages_and_mentions() -> None:
    action = format_entry(entry(0, "waves", action=True, picked=True)).plain
    assert action.startswith("12:00:00  * ada waves  😄 happy 90% ✋")
    direct = format_entry(entry(1, "psst", direct=True)).plain
    assert "✉ grace" in direct
    mention = format_entry(entry(2, "hi ada", mention=True))
    assert "hi ada" in mention.plain


async def test_a_mention_row_is_highlighted_across_the_width() -> None:
    app = LogApp()
    async with app.run_test(size=(60, 6)) as pilot:
        log = app.log_view
        log.add_entry(entry(0, "hi ada", mention=True))
        await settle(pilot, log)
        strip = log.render_line(1)
        mention = log.get_component_rich_style("message-log--mention", partial=True)
        assert strip.cell_length == log.size.width
        assert all(s.style and s.style.bgcolor == mention.bgcolor for s in strip if s.text.strip())


def test_nick_colours_are_stable_across_processes() -> None:
    names = ["ada", "grace", "linus", "日本", "x" * 40]
    here = [str(nick_style(name).color) for name in names]
    code = (
        "from fer_tui.widgets.nick import nick_style;"
        f"print([str(nick_style(n).color) for n in {names!r}])"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="random")
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert other == str(here)
    assert len(set(here)) > 1


def test_scrollback_setting() -> None:
    assert Settings().scrollback == 100_000
    assert Settings().merged({"scrollback": "500"}).scrollback == 500
    for bad in (0, "many", 2.5, True):
        with pytest.raises(ConfigError):
            Settings().merged({"scrollback": bad})


class FrozenApp(FerApp):
    def run_connection(self) -> None:  # type: ignore[override]
        pass


async def test_ctrl_f_searches_the_chat_log_and_escape_closes() -> None:
    app = FrozenApp(
        Settings(
            server="ws://hub.invalid:1", room="lobby", name="ada", camera="none", scrollback=500
        )
    )
    # 120 wide: the room list and sidebar leave the log room for a row on one line.
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert app.chat is not None
        log = app.chat.log_view
        assert log.scrollback == 500
        for i in range(60):
            log.add_entry(entry(i, "lunch at noon?" if i in (5, 30) else f"message {i}"))
        await settle(pilot, log)
        await pilot.press("ctrl+f")
        bar = app.chat.query_one(SearchBar)
        assert bar.has_focus and bar.display
        await pilot.press(*"lunch")
        assert log.match_count == 2 and log.current_match.id == "id30"  # type: ignore[union-attr]
        assert bar.border_subtitle == "2/2"
        await pilot.press("enter")
        assert log.current_match.id == "id5" and bar.border_subtitle == "1/2"  # type: ignore[union-attr]
        await pilot.pause()
        assert any("lunch at noon?" in row for row in shown(log))  # scrolled to it
        await pilot.press("shift+f3")
        assert log.current_match.id == "id30"  # type: ignore[union-attr]
        await pilot.press("f3")
        assert log.current_match.id == "id5"  # type: ignore[union-attr]
        await pilot.press("escape")
        assert not bar.display and log.match_count == 0
        message_input = app.chat.query_one("#message-input", Input)
        assert message_input.has_focus and message_input.value == ""  # nothing was sent
        assert len(log.entries) == 60


@given(
    st.text(st.sampled_from("ab c  日🙂\n"), max_size=200),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=10),
)
def test_wrap_spans_fit_the_width_and_lose_nothing(plain: str, width: int, indent: int) -> None:
    spans = wrap_spans(plain, width, indent)
    kept = []
    for number, (start, end) in enumerate(spans):
        line = plain[start:end].rstrip(" ")
        room = max(1, width - (indent if number else 0))
        assert "\n" not in line
        assert cell_len(line) <= room or len(line) == 1  # a wide char in a 1-cell room
        kept.append(plain[start:end])
    assert "".join(kept).replace(" ", "") == plain.replace(" ", "").replace("\n", "")
    assert len(spans) >= plain.count("\n") + 1


def test_wrap_spans_break_at_spaces() -> None:
    text = "the quick brown fox"
    assert [text[s:e].rstrip() for s, e in wrap_spans(text, 10)] == ["the quick", "brown fox"]
    assert [text[s:e].rstrip() for s, e in wrap_spans(text, 12, 4)] == ["the quick", "brown", "fox"]
    word = "abcdefgh"
    assert [word[s:e] for s, e in wrap_spans(word, 3)] == ["abc", "def", "gh"]
