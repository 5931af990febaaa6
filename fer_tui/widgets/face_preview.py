"""A small preview of the last face crop and its label: what the next message will carry.

The crop is drawn with half-block characters (two grey pixels per cell) and
stays in the terminal; it is never sent anywhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from rich.color import Color
from rich.style import Style
from rich.text import Span, Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for

if TYPE_CHECKING:
    import numpy as np

#: Cells across the preview (the 48×48 crop is shown at half resolution).
PREVIEW_CELLS = 20


@lru_cache(maxsize=4096)
def _cell_style(upper: int, lower: int) -> Style:
    return Style(
        color=Color.from_rgb(upper, upper, upper), bgcolor=Color.from_rgb(lower, lower, lower)
    )


def render_crop(crop: np.ndarray, cells: int = PREVIEW_CELLS) -> Text:
    """Draw a grey crop as ``cells`` columns × ``cells/2`` rows of ``▀``.

    Grey levels are rounded to 64 steps so the cell styles can be cached
    (the preview is redrawn a few times a second).
    """
    import cv2
    import numpy as np

    small = (
        np.asarray(cv2.resize(crop, (cells, cells), interpolation=cv2.INTER_AREA), np.uint8) & 0xFC
    )
    row_text = "▀" * cells + "\n"
    spans = []
    for row, (top, bottom) in enumerate(
        zip(small[0::2].tolist(), small[1::2].tolist(), strict=True)
    ):
        start = row * len(row_text)
        for col, (upper, lower) in enumerate(zip(top, bottom, strict=True)):
            spans.append(Span(start + col, start + col + 1, _cell_style(upper, lower)))
    return Text(row_text * (cells // 2), spans=spans)


class FacePreview(Static):
    """Last crop + label, or the reason there is none."""

    def show(
        self, crop: np.ndarray | None, label: str | None, confidence: float, reason: str | None
    ) -> None:
        text = Text()
        if crop is not None:
            text.append_text(render_crop(crop))
        else:
            text.append("\n(no face)\n\n", style="dim")
        if label is not None:
            text.append(f"{emoji_for(label)} {label} {confidence:.0%}", style="bold")
        else:
            text.append(f"{emoji_for(None)} {reason or 'no tag'}", style="dim italic")
        self.update(text)
