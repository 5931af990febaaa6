"""Slash commands: parse a typed line, complete it, and describe it, without any I/O.

:func:`parse` turns the input line into exactly one of three things and never
raises:

* a command object (:class:`Join`, :class:`Nick`, :class:`Me`, ...),
* :class:`Say`, a plain message (``//text`` says a literal ``/text``),
* :class:`CommandError`, a sentence for the user; nothing is sent.

The command table :data:`COMMANDS` is the one place a command's name, usage and
summary live: the parser, ``/help`` and tab completion all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from hub.protocol import MAX_ROOM_CHARS, MAX_TEXT_CHARS, MAX_TOPIC_CHARS, MAX_USER_CHARS

# --- what a line can be ------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Plain text for the current buffer."""

    text: str


@dataclass(frozen=True)
class Join:
    room: str


@dataclass(frozen=True)
class Part:
    """Leave ``room``, or the current buffer when ``None``."""

    room: str | None = None


@dataclass(frozen=True)
class Nick:
    name: str


@dataclass(frozen=True)
class Me:
    """An action: ``/me waves`` is shown as ``* ada waves``."""

    action: str


@dataclass(frozen=True)
class Msg:
    """A direct message to one member of the current room."""

    user: str
    text: str


@dataclass(frozen=True)
class Topic:
    """Set the room's topic, or show it when ``text`` is ``None``."""

    text: str | None = None


@dataclass(frozen=True)
class Who:
    pass


@dataclass(frozen=True)
class Clear:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Help:
    """Show every command, or one (``command`` without its slash)."""

    command: str | None = None


@dataclass(frozen=True)
class CommandError:
    """Why a line was not understood; shown as a notice, never sent."""

    message: str


Command: TypeAlias = Join | Part | Nick | Me | Msg | Topic | Who | Clear | Quit | Help
Parsed: TypeAlias = Command | Say | CommandError


# --- the table ---------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """One row of the command table."""

    name: str
    usage: str
    summary: str
    build: Callable[[str], Parsed]
    #: What tab completes for the first argument: "user", "room" or nothing.
    completes: str | None = None


def _no_arguments(make: Callable[[], Command], name: str) -> Callable[[str], Parsed]:
    def build(rest: str) -> Parsed:
        if rest:
            return CommandError(f"/{name} takes no arguments")
        return make()

    return build


def _one_word(rest: str, what: str, limit: int) -> str | CommandError:
    """``rest`` as a single printable word of at most ``limit`` characters."""
    if not rest:
        return CommandError(f"missing {what}")
    if len(rest.split()) > 1:
        return CommandError(f"the {what} must be one word, got {rest!r}")
    if not rest.isprintable():
        return CommandError(f"the {what} contains control characters")
    if len(rest) > limit:
        return CommandError(f"the {what} is longer than {limit} characters")
    return rest


def _text(rest: str, what: str, limit: int = MAX_TEXT_CHARS) -> str | CommandError:
    if not rest:
        return CommandError(f"missing {what}")
    if len(rest) > limit:
        return CommandError(f"the {what} is longer than {limit} characters")
    return rest


def _join(rest: str) -> Parsed:
    room = _one_word(rest, "room name", MAX_ROOM_CHARS)
    return room if isinstance(room, CommandError) else Join(room)


def _part(rest: str) -> Parsed:
    if not rest:
        return Part()
    room = _one_word(rest, "room name", MAX_ROOM_CHARS)
    return room if isinstance(room, CommandError) else Part(room)


def _nick(rest: str) -> Parsed:
    name = _one_word(rest, "name", MAX_USER_CHARS)
    return name if isinstance(name, CommandError) else Nick(name)


def _me(rest: str) -> Parsed:
    action = _text(rest, "action (e.g. /me waves)")
    return action if isinstance(action, CommandError) else Me(action)


def _msg(rest: str) -> Parsed:
    user, text = _split_word(rest)
    name = _one_word(user, "name (e.g. /msg ada hello)", MAX_USER_CHARS)
    if isinstance(name, CommandError):
        return name
    body = _text(text.strip(), f"text to send to {name}")
    return body if isinstance(body, CommandError) else Msg(name, body)


def _topic(rest: str) -> Parsed:
    if not rest:
        return Topic()
    text = _text(rest, "topic", MAX_TOPIC_CHARS)
    return text if isinstance(text, CommandError) else Topic(text)


def _help(rest: str) -> Parsed:
    if not rest:
        return Help()
    name = rest.removeprefix("/").lower()
    if name not in _BY_NAME:
        return CommandError(f"no command /{name}; /help lists them")
    return Help(name)


COMMANDS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("join", "/join ROOM", "join ROOM (or switch to it) in a new buffer", _join, "room"),
    CommandSpec("part", "/part [ROOM]", "leave ROOM, or close the current buffer", _part, "room"),
    CommandSpec("nick", "/nick NAME", "change your name in every room", _nick),
    CommandSpec("me", "/me ACTION", "send an action, shown as * you ACTION", _me),
    CommandSpec("msg", "/msg NAME TEXT", "send TEXT to NAME only, in its own buffer", _msg, "user"),
    CommandSpec("topic", "/topic [TEXT]", "show the room's topic, or set it to TEXT", _topic),
    CommandSpec("who", "/who", "list the members and their moods", _no_arguments(Who, "who")),
    CommandSpec("clear", "/clear", "clear this buffer's log", _no_arguments(Clear, "clear")),
    CommandSpec("quit", "/quit", "leave every room and exit", _no_arguments(Quit, "quit")),
    CommandSpec("help", "/help [COMMAND]", "list the commands, or explain one", _help),
)
_BY_NAME: Final = {spec.name: spec for spec in COMMANDS}


# --- parsing -----------------------------------------------------------------


def parse(line: str) -> Parsed:
    """Parse one input line (see the module docstring); never raises."""
    if line.startswith("//"):
        return _say(line[1:])
    if not line.startswith("/"):
        return _say(line)
    head, rest = _split_word(line[1:])
    name = head.lower()
    if not name:
        return CommandError("a command name must follow the slash; type //text to send /text")
    spec = _BY_NAME.get(name)
    if spec is None:
        return CommandError(f"unknown command /{head}; /help lists the commands")
    return spec.build(rest.strip())


def _split_word(text: str) -> tuple[str, str]:
    """``text``'s first word (empty if it starts with a space) and the rest, stripped."""
    head = text.split(None, 1)[0] if text and not text[0].isspace() else ""
    return head, text[len(head) :].strip()


def _say(text: str) -> Say | CommandError:
    if not text.strip():
        return CommandError("nothing to send")
    if len(text) > MAX_TEXT_CHARS:
        return CommandError(f"the message is longer than {MAX_TEXT_CHARS} characters")
    return Say(text)


def help_lines(command: str | None = None) -> list[str]:
    """``/help``'s text: one line per command, or the usage of one."""
    specs = COMMANDS if command is None else (_BY_NAME[command],)
    width = max(len(spec.usage) for spec in COMMANDS)
    lines = [f"{spec.usage.ljust(width)}  {spec.summary}" for spec in specs]
    if command is None:
        lines.append(f"{'//text'.ljust(width)}  send text that starts with a slash")
    return lines


# --- completion --------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """Replace ``line[start:end]`` with one of ``candidates`` (in order)."""

    start: int
    end: int
    candidates: tuple[str, ...]


def completions(line: str, users: Sequence[str], rooms: Sequence[str] = ()) -> Completion:
    """What Tab offers for the word before the end of ``line``.

    A first word starting with ``/`` completes command names; the first argument
    of ``/msg`` a member and of ``/join``/``/part`` a room; any other word a
    member's name, with ``": "`` after it at the start of a plain message.
    Matching ignores case; candidates keep their own spelling, sorted.
    """
    start = len(line) - len(line.split(" ")[-1])
    word = line[start:]
    before = line[:start]
    if not before and word.startswith("/") and not word.startswith("//"):
        names = [f"/{spec.name} " for spec in COMMANDS]
        return Completion(start, len(line), _matching(names, word))
    first, *args = before.split() or [""]
    pool: Sequence[str] = users
    suffix = " "
    if first.startswith("/") and len(args) == 0:
        spec = _BY_NAME.get(first[1:].lower())
        kind = spec.completes if spec is not None else None
        pool = rooms if kind == "room" else users if kind == "user" else ()
    elif not before:
        suffix = ": "
    if not word:
        return Completion(start, len(line), ())
    return Completion(start, len(line), _matching([name + suffix for name in pool], word))


def _matching(candidates: Sequence[str], prefix: str) -> tuple[str, ...]:
    folded = prefix.casefold()
    found = {c for c in candidates if c.casefold().startswith(folded)}
    return tuple(sorted(found, key=str.casefold))


class TabCompleter:
    """Tab cycling: the first press completes, the next ones step through the others."""

    def __init__(self) -> None:
        #: (the line as the last press left it, its completion, the candidate shown)
        self._cycle: tuple[str, Completion, int] | None = None

    def complete(self, line: str, users: Sequence[str], rooms: Sequence[str] = ()) -> str | None:
        """Return the line after one Tab press, or ``None`` when nothing matches."""
        if self._cycle is not None and self._cycle[0] == line:
            _, completion, index = self._cycle
            index = (index + 1) % len(completion.candidates)
        else:
            completion = completions(line, users, rooms)
            if not completion.candidates:
                self._cycle = None
                return None
            index = 0
        result = line[: completion.start] + completion.candidates[index]
        self._cycle = (result, completion, index)
        return result

    def reset(self) -> None:
        """Forget the cycle (the user typed something else)."""
        self._cycle = None
