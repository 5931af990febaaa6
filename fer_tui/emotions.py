"""The seven FER2013 expression classes as the client shows them: order, index and emoji.

The labels themselves are the wire contract, owned by the hub
(:data:`hub.labels.LABELS`) and re-exported here; the model's output index and
the emoji the client shows come from this module. Training and the client
import it; nothing else spells the labels out.
"""

from __future__ import annotations

from typing import Final

from hub.labels import LABELS

__all__ = ["EMOJI", "LABELS", "NUM_CLASSES", "emoji_for", "label_index"]

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
