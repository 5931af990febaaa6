"""A small preview of the last face crop and its label: what the next message will carry.

The crop is drawn with half-block characters (two grey pixels per cell) and
stays in the terminal; it is never sent anywhere.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for

#: Cells across the preview (the 48×48 crop is shown at half resolution).
PREVIEW_CELLS = 24


def render_crop(crop: np.ndarray, cells: int = PREVIEW_CELLS) -> Text:
    """Draw a grey crop as ``cells`` columns × ``cells/2`` rows of ``▀``."""
    import cv2

    small = cv2.resize(crop, (cells, cells), interpolation=cv2.INTER_AREA)
    text = Text()
    for top, bottom in zip(small[0::2], small[1::2], strict=True):
        for upper, lower in zip(top.tolist(), bottom.tolist(), strict=True):
            style = Style(
                color=Color.from_rgb(upper, upper, upper),
                bgcolor=Color.from_rgb(lower, lower, lower),
            )
            text.append("▀", style=style)
        text.append("\n")
    return text


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
