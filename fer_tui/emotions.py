"""The seven FER2013 expression classes: one place for labels, order and emoji.

The model's output index, the wire protocol's ``emotion.label`` values and the
emoji the client shows all come from here. Training, the hub and the client
import this module; nothing else spells the labels out.
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

#: One emoji per class, as the original web app showed them.
EMOJI: Final[dict[str, str]] = {
    "angry": "😠",
    "disgust": "🤢",
    "fear": "😨",
    "happy": "😄",
    "sad": "😢",
    "surprise": "😮",
    "neutral": "😐",
}

NUM_CLASSES: Final[int] = len(LABELS)

_INDEX: Final[dict[str, int]] = {label: i for i, label in enumerate(LABELS)}


def label_index(label: str) -> int:
    """Return the model output index of ``label``; raise ``ValueError`` if unknown."""
    try:
        return _INDEX[label]
    except KeyError:
        raise ValueError(f"unknown emotion label {label!r}; expected one of {LABELS}") from None


def emoji_for(label: str | None) -> str:
    """Return the emoji for ``label``, or a blank-width placeholder when untagged."""
    if label is None:
        return "·"
    return EMOJI.get(label, "?")
