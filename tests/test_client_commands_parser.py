"""The sans-I/O parts of the client: command parser, completion, input history,
buffers, moods, mentions and notification sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fer_tui import commands
from fer_tui.alerts import mentions, notification_sequence
from fer_tui.buffers import HIGHLIGHTS, Buffers
from fer_tui.commands import (
    Clear,
    CommandError,
    Help,
    Join,
    Me,
    Msg,
    Nick,
    Part,
    Quit,
    Say,
    TabCompleter,
    Topic,
    Who,
    completions,
    parse,
)
from fer_tui.input_history import InputHistory
from fer_tui.moods import MoodTracker, share_bar, sparkline
from hub.protocol import MAX_ROOM_CHARS, MAX_TEXT_CHARS, MAX_USER_CHARS


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("hello", Say("hello")),
        ("  spaced  ", Say("  spaced  ")),
        ("//etc/passwd is a path", Say("/etc/passwd is a path")),
        ("/join r2", Join("r2")),
        ("/JOIN  r2 ", Join("r2")),
        ("/part", Part()),
        ("/part r2", Part("r2")),
        ("/nick grace", Nick("grace")),
        ("/me waves at everyone", Me("waves at everyone")),
        ("/msg bob see you at 5", Msg("bob", "see you at 5")),
        ("/msg\tbob hi", Msg("bob", "hi")),
        ("/topic", Topic()),
        ("/topic Release on Friday", Topic("Release on Friday")),
        ("/who", Who()),
        ("/clear", Clear()),
        ("/quit", Quit()),
        ("/help", Help()),
        ("/help /msg", Help("msg")),
    ],
)
def test_parse_commands_and_messages(line: str, parsed: object) -> None:
    assert parse(line) == parsed


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("/frobnicate now", ["unknown command /frobnicate", "/help"]),
        ("/", ["command name", "//text"]),
        ("/ hello", ["command name"]),
        ("/join", ["missing room name"]),
        ("/join two words", ["one word"]),
        ("/join " + "r" * (MAX_ROOM_CHARS + 1), [f"longer than {MAX_ROOM_CHARS}"]),
        ("/nick " + "n" * (MAX_USER_CHARS + 1), [f"longer than {MAX_USER_CHARS}"]),
        ("/nick a\x1bb", ["control characters"]),
        ("/me", ["missing action"]),
        ("/msg", ["missing name"]),
        ("/msg bob", ["missing text to send to bob"]),
        ("/who is there", ["/who takes no arguments"]),
        ("/topic " + "t" * 301, ["longer than 300"]),
        ("/help nope", ["no command /nope"]),
        ("   ", ["nothing to send"]),
        ("x" * (MAX_TEXT_CHARS + 1), [f"longer than {MAX_TEXT_CHARS}"]),
    ],
)
def test_bad_lines_are_clear_errors(line: str, words: list[str]) -> None:
    result = parse(line)
    assert isinstance(result, CommandError), result
    for word in words:
        assert word in result.message


@given(st.text(max_size=300))
def test_any_line_parses_to_a_command_a_message_or_an_error(line: str) -> None:
    result = parse(line)
    assert isinstance(result, (Say, CommandError, *commands.Command.__args__))
    if isinstance(result, Say):  # a message is never a mis-typed command
        assert not line.startswith("/") or line.startswith("//")
        assert result.text.strip()
    if line.startswith("/") and not line.startswith("//"):
        assert not isinstance(result, Say)


@given(st.sampled_from([spec.name for spec in commands.COMMANDS]), st.text(max_size=80))
def test_every_command_with_any_arguments_never_raises(name: str, rest: str) -> None:
    result = parse(f"/{name} {rest}")
    assert not isinstance(result, Say)


def test_help_comes_from_the_same_table() -> None:
    lines = commands.help_lines()
    for spec in commands.COMMANDS:
        assert any(line.startswith(spec.usage) and spec.summary in line for line in lines)
    assert any(line.startswith("//text") for line in lines)
    assert commands.help_lines("msg") == [
        line for line in lines if line.startswith("/msg NAME TEXT")
    ]


def test_completion_of_commands_names_and_rooms() -> None:
    users = ["ada", "Adam", "bob"]
    assert completions("/j", users).candidates == ("/join ",)
    every = sorted(f"/{spec.name} " for spec in commands.COMMANDS)
    assert completions("/", users).candidates == tuple(every)
    assert completions("ad", users).candidates == ("ada: ", "Adam: ")  # line start: address
    assert completions("hi AD", users).candidates == ("ada ", "Adam ")
    assert completions("/msg b", users).candidates == ("bob ",)
    assert completions("/join lo", users, rooms=["lobby", "r2"]).candidates == ("lobby ",)
    assert completions("/nick a", users).candidates == ()  # nothing sensible to offer
    assert completions("hi ", users).candidates == ()


def test_tab_cycles_and_restarts_after_typing() -> None:
    tab = TabCompleter()
    users = ["ada", "Adam", "bob"]
    assert tab.complete("hi a", users) == "hi ada "
    assert tab.complete("hi ada ", users) == "hi Adam "
    assert tab.complete("hi Adam ", users) == "hi ada "
    assert tab.complete("hi ada and b", users) == "hi ada and bob "
    assert tab.complete("zzz", users) is None


def test_input_history_keeps_the_draft() -> None:
    history = InputHistory(size=3)
    assert history.previous("draft") is None
    for line in ("one", "two", "two", "three", "four"):
        history.add(line)
    assert history.previous("draft") == "four"
    assert history.previous("four") == "three"
    assert history.previous("three") == "two"
    assert history.previous("two") is None  # "one" fell out (size 3), no repeat of "two"
    assert history.next() == "three"
    assert history.next() == "four"
    assert history.next() == "draft"
    assert history.next() is None


def test_buffers_order_unread_and_switching() -> None:
    buffers = Buffers()
    buffers.select(buffers.add_room("lobby")[0].key)
    r2, new = buffers.add_room("r2")
    assert new and buffers.add_room("r2") == (r2, False)
    dm, _ = buffers.add_direct("lobby", "bob")
    assert [b.title for b in buffers] == ["lobby", "r2", "@bob", "highlights"]
    buffers.note_arrival(r2, mention=True)
    buffers.note_arrival(r2, mention=False)
    buffers.note_arrival(buffers.current, mention=True)  # being read: not unread
    assert (r2.unread, r2.mentions, buffers.current.unread) == (2, 1, 0)
    assert buffers.step(1) is r2 and (r2.unread, r2.mentions) == (0, 0)
    assert buffers.step(-2).key == HIGHLIGHTS  # wraps around
    assert buffers.select_index(2) is dm and buffers.select_index(9) is None
    assert buffers.rename_peer("lobby", "bob", "robert") is dm and dm.title == "@robert"
    assert buffers.current_key == dm.key
    gone = buffers.remove("lobby")  # the room takes its conversations along
    assert [b.title for b in gone] == ["lobby", "@robert"]
    assert [b.title for b in buffers] == ["r2", "highlights"]
    assert buffers.current is r2
    assert buffers.remove(HIGHLIGHTS) == []


def test_moods_sparkline_and_shares() -> None:
    moods = MoodTracker(keep_seconds=600)
    for ts, label in enumerate(["happy", "sad", None, "happy", "angry"]):
        moods.record("ada", label, 100.0 + ts)
    moods.record("bob", "neutral", 0.0)  # inside the 600 s window, outside the 60 s one
    assert moods.last_tags("ada") == ("happy", "sad", "happy", "angry")
    assert sparkline(moods.last_tags("ada")).plain == "█▃█▁"
    assert moods.shares(104.0, 60) == [("happy", 0.5), ("angry", 0.25), ("sad", 0.25)]
    assert [label for label, _ in moods.shares(104.0, 600)] == [
        "happy",
        "angry",
        "sad",
        "neutral",
    ]
    moods.rename("ada", "ada2")
    assert moods.last_tags("ada") == () and len(moods.last_tags("ada2")) == 4
    bar = share_bar(moods.shares(104.0, 60), 20)
    assert bar.cell_len == 20
    assert share_bar([], 7).plain == "·" * 7
    for _ in range(20):
        moods.record("ada2", "sad", 200.0)
    assert len(moods.last_tags("ada2")) == 8  # bounded


def test_mentions_are_whole_words_in_any_case() -> None:
    assert mentions("hey Ada, look", "ada")
    assert mentions("@ADA!", "ada")
    assert mentions("ada", "ada")
    assert not mentions("adam is here", "ada")
    assert not mentions("canada", "ada")
    assert not mentions("ada_b", "ada")
    assert mentions("ping a.b now", "a.b") and not mentions("ping axb", "a.b")  # no regex


def test_notification_sequences_are_safe_and_only_where_supported() -> None:
    assert notification_sequence({"TERM": "xterm-256color"}, "ada", "hi") is None
    assert notification_sequence({"TERM": "tmux-256color"}, "ada", "hi") is None
    osc9 = notification_sequence({"TERM_PROGRAM": "WezTerm"}, "ada (lobby)", "hi\x07there")
    assert osc9 == "\x1b]9;ada (lobby): hi there\x1b\\"
    osc777 = notification_sequence({"TERM": "foot"}, "a;b", "x\x1b]9;evil\x1b\\")
    assert osc777 is not None and osc777.startswith("\x1b]777;notify;a,b;")
    body = osc777[len("\x1b]777;notify;a,b;") : -2]
    assert "\x1b" not in body and "\x07" not in body
