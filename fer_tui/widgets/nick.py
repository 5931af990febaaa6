"""Stable nick colours: one name, one colour, in every widget and every session."""

from __future__ import annotations

import zlib
from functools import lru_cache

from rich.style import Style

#: Colours readable on dark and light themes; green stays out (it marks "online" and you).
NICK_COLOURS = (
    "#e06c75",
    "#d19a66",
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#f78c6c",
    "#82aaff",
    "#ff79c6",
    "#bd93f9",
    "#8be9fd",
    "#f1fa8c",
)


@lru_cache(maxsize=4096)
def nick_style(name: str) -> Style:
    """The bold colour of ``name``.

    CRC-32 of the UTF-8 name, not :func:`hash`: Python salts string hashes per
    process, and a colour that changed on every start would not be stable.
    """
    colour = NICK_COLOURS[zlib.crc32(name.encode("utf-8", "surrogatepass")) % len(NICK_COLOURS)]
    return Style(color=colour, bold=True)
