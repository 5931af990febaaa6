"""Mentions and the terminal's ways of calling for attention, without any I/O.

A message *mentions* you when your current name appears in it as a whole word,
in any case (``@ada``, ``Ada:`` and ``ADA!`` do; ``adam`` does not). The
desktop notification is an escape sequence the app writes to its terminal:
OSC 9 (iTerm2, WezTerm, Windows Terminal, ConEmu), OSC 777 (foot, Ghostty,
rxvt-unicode, Konsole, VTE terminals), or none where the terminal is unknown,
so an unknown terminal never shows stray characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

#: ``$TERM_PROGRAM`` values of terminals that show OSC 9 as a notification.
OSC9_PROGRAMS: Final = frozenset({"iTerm.app", "WezTerm", "ConEmu", "ghostty"})
#: ``$TERM`` prefixes of terminals that understand OSC 777 ``notify``.
OSC777_TERMS: Final = ("foot", "rxvt-unicode", "xterm-ghostty")
#: Longest notification body; terminals truncate anyway.
MAX_NOTIFICATION_CHARS: Final = 200


@lru_cache(maxsize=64)
def _mention_pattern(name: str) -> re.Pattern[str]:
    # \w on both sides: "ada" in "ada," or "@ada" counts, in "adam" or "ada_b" not.
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` names ``name`` as a whole word, ignoring case."""
    return bool(name) and _mention_pattern(name).search(text) is not None


def notification_sequence(env: Mapping[str, str], title: str, body: str) -> str | None:
    """The escape sequence that raises a desktop notification here, or ``None``.

    ``env`` is the process environment (``TERM``, ``TERM_PROGRAM``, ``VTE_VERSION``).
    Control characters and the OSC separator ``;`` in the title are replaced,
    so wire text can never end the sequence early or start another one.
    """
    title, body = _plain(title), _plain(body)[:MAX_NOTIFICATION_CHARS]
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if env.get("VTE_VERSION") or term.startswith(OSC777_TERMS) or "KONSOLE_VERSION" in env:
        return f"\x1b]777;notify;{title.replace(';', ',')};{body}\x1b\\"
    if program in OSC9_PROGRAMS or "WT_SESSION" in env:
        return f"\x1b]9;{title}: {body}\x1b\\"
    return None


def _plain(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
