"""Smoothing of per-frame class probabilities, so one blink does not flip the label."""

from __future__ import annotations

from collections import deque

import numpy as np

from fer_tui.emotions import NUM_CLASSES


class ProbabilitySmoother:
    """Mean of the last ``window`` probability vectors seen within ``max_age`` seconds.

    Frames older than ``max_age`` are forgotten, so a face that comes back after
    a pause starts fresh instead of inheriting the old expression.
    """

    def __init__(self, window: int = 5, max_age: float = 2.0) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.max_age = max_age
        self._items: deque[tuple[float, np.ndarray]] = deque(maxlen=window)

    def reset(self) -> None:
        """Forget everything (e.g. when the face is lost)."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def update(self, probs: np.ndarray, now: float) -> np.ndarray:
        """Add the probabilities of a frame taken at ``now``; return the smoothed vector."""
        probs = np.asarray(probs, dtype=np.float32).reshape(NUM_CLASSES)
        while self._items and now - self._items[0][0] > self.max_age:
            self._items.popleft()
        self._items.append((now, probs))
        mean = np.mean([p for _, p in self._items], axis=0)
        return mean / mean.sum()
