"""Moods over time: each member's recent tags and the room's mix, without any I/O.

:class:`MoodTracker` keeps, per room, the last tags of each member (for the
sparkline in the member list) and every tag of the last minutes (for the room
summary). Untagged messages carry no mood and are not counted.

A sparkline cell's height is the label's *valence* (pleasant high, unpleasant
low) and its colour the label's; both are display choices of the client.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from rich.text import Text

from fer_tui.emotions import LABELS

#: Tags kept per member for the sparkline.
SPARK_LENGTH: Final = 8
#: Block characters from low to high.
_BLOCKS: Final = "▁▂▃▄▅▆▇█"

#: How pleasant each expression reads, 0 (unpleasant) to 1 (pleasant).
VALENCE: Final[dict[str, float]] = {
    "angry": 0.0,
    "disgust": 0.1,
    "fear": 0.2,
    "sad": 0.25,
    "neutral": 0.5,
    "surprise": 0.7,
    "happy": 1.0,
}
#: One colour per expression (Rich colour names, readable on dark and light themes).
COLOUR: Final[dict[str, str]] = {
    "angry": "red",
    "disgust": "green4",
    "fear": "medium_purple",
    "happy": "gold1",
    "sad": "dodger_blue2",
    "surprise": "dark_orange",
    "neutral": "grey62",
}


@dataclass(frozen=True)
class Tagged:
    """One tagged message: who, which label, when (hub time, seconds)."""

    user: str
    label: str
    ts: float


class MoodTracker:
    """The tags of one room, newest last."""

    def __init__(self, keep_seconds: float = 3600.0) -> None:
        self.keep_seconds = keep_seconds
        self._by_user: dict[str, deque[str]] = {}
        self._recent: deque[Tagged] = deque()

    def record(self, user: str, label: str | None, ts: float) -> None:
        """Note a message's tag (``None``: untagged, ignored)."""
        if label is None or label not in VALENCE:
            return
        self._by_user.setdefault(user, deque(maxlen=SPARK_LENGTH)).append(label)
        self._recent.append(Tagged(user, label, ts))
        while self._recent and self._recent[0].ts < ts - self.keep_seconds:
            self._recent.popleft()

    def rename(self, old: str, new: str) -> None:
        """Carry a member's mood over a nick change."""
        if old in self._by_user:
            self._by_user[new] = self._by_user.pop(old)

    def last_tags(self, user: str) -> tuple[str, ...]:
        return tuple(self._by_user.get(user, ()))

    def shares(self, now: float, window_seconds: float) -> list[tuple[str, float]]:
        """Each label's share of the tags in the last ``window_seconds``, largest first."""
        counts = Counter(t.label for t in self._recent if t.ts >= now - window_seconds)
        total = sum(counts.values())
        if not total:
            return []
        order = {label: i for i, label in enumerate(LABELS)}
        ranked = sorted(counts.items(), key=lambda item: (-item[1], order[item[0]]))
        return [(label, count / total) for label, count in ranked]


def sparkline(labels: Iterable[str]) -> Text:
    """One cell per tag: height by valence, colour by label."""
    text = Text()
    for label in labels:
        level = round(VALENCE[label] * (len(_BLOCKS) - 1))
        text.append(_BLOCKS[level], style=COLOUR[label])
    return text


def share_bar(shares: list[tuple[str, float]], width: int) -> Text:
    """A bar ``width`` cells wide split by share, each part in its label's colour."""
    text = Text()
    if not shares:
        return text.append("·" * width, style="dim")
    cells = [round(share * width) for _, share in shares]
    cells[0] += width - sum(cells)  # rounding: the largest part absorbs the rest
    for (label, _), count in zip(shares, cells, strict=True):
        text.append("█" * max(count, 0), style=COLOUR[label])
    return text
