"""The room's mood: each expression's share of the tags of the last minutes."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for
from fer_tui.moods import COLOUR, share_bar

#: Labels listed under the bar (the bar itself shows them all).
LISTED = 3


def format_summary(shares: list[tuple[str, float]], window_minutes: float, width: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"Mood, last {window_minutes:g} min\n", style="bold")
    text.append_text(share_bar(shares, width))
    text.append("\n")
    if not shares:
        return text.append("no tagged messages", style="dim italic")
    for label, share in shares[:LISTED]:
        text.append(f"{emoji_for(label)}", style=COLOUR[label])
        text.append(f"{share:.0%} ", style="dim")
    return text


class MoodSummary(Static):
    """Three lines: title, a bar split by share, the largest shares with their emoji."""

    def show(self, shares: list[tuple[str, float]], window_minutes: float) -> None:
        width = max(self.content_size.width, 10)
        self.update(format_summary(shares, window_minutes, width))
