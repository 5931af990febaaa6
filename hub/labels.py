"""The expression labels a message's ``emotion.label`` may carry: part of the wire contract.

They are FER2013's seven classes in its canonical order, which is also the
emotion model's output order. The hub owns them because it validates every
incoming label; the client (:mod:`fer_tui.emotions`, which adds emoji and
display) and training import them from here, so they are spelled out once.
"""

from __future__ import annotations

from typing import Final

#: Class names in FER2013's canonical order (the model's output order).
LABELS: Final[tuple[str, ...]] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
