"""Beside the input: the tag your next message will carry, as it changes."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for
from fer_tui.moods import COLOUR


def format_tag(
    label: str | None, confidence: float, reason: str | None, override: str | None
) -> Text:
    """``override``: ``"withheld"`` or ``"picked"`` for the next message only."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if override == "withheld":
        return text.append("⊘ withheld once", style="bold yellow")
    if label is None:
        return text.append(f"{emoji_for(None)} {reason or 'untagged'}", style="dim italic")
    text.append(f"{emoji_for(label)} ")
    text.append(label, style=f"bold {COLOUR.get(label, '')}")
    if override == "picked":
        return text.append(" ✋picked", style="bold yellow")
    return text.append(f" {confidence:.0%}", style="dim")


class TagIndicator(Static):
    """The app calls :meth:`show` on every analysis and when an override changes."""

    def show(
        self, label: str | None, confidence: float, reason: str | None, override: str | None
    ) -> None:
        self.update(format_tag(label, confidence, reason, override))
