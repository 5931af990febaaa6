"""Make any string from the wire inert for the terminal.

Whatever a hub, a relay or another member sends, the client must never pass a
control sequence to the terminal: an ESC in a message could otherwise retitle
the window (OSC 0), clear the screen (CSI 2J), write the clipboard (OSC 52) or
plant a link (OSC 8). Every widget that shows wire data goes through this
module; it replaces, it never drops, so the line is still shown and the reader
can see that something odd was sent.

What is replaced, and by what:

* C0 controls and DEL become caret notation, as ``cat -v`` and most terminal
  chats print them: ESC → ``^[``, BEL → ``^G``, DEL → ``^?``. ``\\n`` is kept
  where the widget shows several lines (message text); ``\\t`` becomes a space
  there (the hub allows it in text; a literal tab would be expanded unevenly).
* C1 controls (U+0080–U+009F; U+009B is a one-byte CSI on some terminals) become
  ``\\x9b``-style escapes: there is no caret form for them.
* Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the
  line/paragraph separators U+2028/U+2029 become ``<U+202E>``. They are shown,
  not removed: removing them would hide that the sender tried to reorder what the
  reader sees (the "Trojan Source" trick), and showing them costs nothing.
* Lone surrogates (which JSON can carry: ``"\\ud800"``) become U+FFFD; they
  cannot be encoded for the terminal at all.

:func:`inert_text` builds a :class:`rich.text.Text` with each replacement in a
visible style. A ``Text`` is never parsed as Rich markup, so ``[bold]`` in a
message stays literal text; widgets must build ``Text`` objects (or
``Content``) from wire strings, never markup strings.
"""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text

#: Style of a replacement in :func:`inert_text`: reversed, so it stands out.
REPLACEMENT_STYLE = Style(reverse=True)

_BIDI_AND_SEPARATORS = "\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}\ud800-\udfff]")
_UNSAFE_MULTILINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}\ud800-\udfff]")


def replacement(char: str, *, multiline: bool = False) -> str:
    """The visible stand-in for one unsafe character (see the module docstring)."""
    code = ord(char)
    if multiline and char == "\t":
        return " "
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"<U+{code:04X}>"


def is_inert(text: str, *, multiline: bool = False) -> bool:
    """True when ``text`` holds nothing that :func:`inert` would replace."""
    return (_UNSAFE_MULTILINE if multiline else _UNSAFE).search(text) is None


def inert(text: str, *, multiline: bool = False) -> str:
    """``text`` with every unsafe character replaced by its visible stand-in.

    ``multiline``: keep ``\\n`` (and show ``\\t`` as a space) for widgets that
    show several lines; otherwise a newline is shown as ``^J``.
    """
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE
    return pattern.sub(lambda match: replacement(match.group(), multiline=multiline), text)


def inert_text(
    text: str,
    style: str | Style = "",
    *,
    multiline: bool = False,
    replacement_style: Style = REPLACEMENT_STYLE,
) -> Text:
    """A :class:`~rich.text.Text` of ``text`` made inert, replacements in ``replacement_style``."""
    result = Text(style=style, end="")
    append_inert(result, text, multiline=multiline, replacement_style=replacement_style)
    return result


def append_inert(
    target: Text,
    text: str,
    style: str | Style = "",
    *,
    multiline: bool = False,
    replacement_style: Style = REPLACEMENT_STYLE,
) -> Text:
    """Append ``text`` made inert to ``target`` (in ``style``); return ``target``."""
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            target.append(text[position : match.start()], style)
        stand_in = replacement(match.group(), multiline=multiline)
        # A tab shown as a space is ordinary whitespace, not a warning.
        target.append(stand_in, style if stand_in == " " else replacement_style)
        position = match.end()
    if position < len(text):
        target.append(text[position:], style)
    return target
