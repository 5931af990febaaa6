"""Face preprocessing shared by training and the client: detect box → crop → 48×48.

FER2013 images are 48×48 grayscale faces framed about as tightly as the
client's detector boxes a face (brows to chin, cheek to cheek). Every path that feeds the
model goes through :func:`crop_face` (live frames) or :func:`as_model_input`
(both), so training and serving see pixels prepared the same way. Pixel
*normalisation* is not done here: it lives inside the model graph, so the model
takes raw 0–255 grey levels.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np

#: Side of the square face image the model takes.
FACE_SIZE: Final[int] = 48

#: How much wider than the detector's box the crop is on each side, as a fraction
#: of the box side. ``bench/client_bench.py`` measures it: on FER2013 val images
#: (upscaled and edge-padded) the detector's box side is a median 98% of the
#: image side, so 0.01 per side reproduces the framing the model was trained on.
FACE_MARGIN: Final[float] = 0.01


class Box(NamedTuple):
    """A face box in pixels: top-left corner, width and height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` (BGR, BGRA or already grey) as a 2-D uint8 grey image."""
    import cv2

    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def square_around(box: Box, margin: float = FACE_MARGIN) -> Box:
    """Return the square box centred on ``box``, widened by ``margin`` per side."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx = box.x + box.w / 2.0
    cy = box.y + box.h / 2.0
    side_px = max(1, round(side))
    return Box(round(cx - side / 2.0), round(cy - side / 2.0), side_px, side_px)


def crop_face(gray: np.ndarray, box: Box, margin: float = FACE_MARGIN) -> np.ndarray:
    """Cut the face in ``box`` out of the grey image ``gray`` as a 48×48 uint8 array.

    The crop is square and widened by ``margin``; parts that fall outside the
    frame are filled by repeating the edge pixels, so a face at the border keeps
    its place in the crop rather than being stretched.
    """
    import cv2

    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {gray.shape}")
    sq = square_around(box, margin)
    height, width = gray.shape
    x0, y0 = max(sq.x, 0), max(sq.y, 0)
    x1, y1 = min(sq.x + sq.w, width), min(sq.y + sq.h, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box} lies outside the {width}×{height} frame")
    patch = gray[y0:y1, x0:x1]
    pad = ((y0 - sq.y, sq.y + sq.h - y1), (x0 - sq.x, sq.x + sq.w - x1))
    if any(p for pair in pad for p in pair):
        patch = np.pad(patch, pad, mode="edge")
    interpolation = cv2.INTER_AREA if patch.shape[0] > FACE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(patch, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)


def as_model_input(faces: np.ndarray) -> np.ndarray:
    """Shape 48×48 grey faces (one or a batch) as the model's N×48×48×1 float32 input.

    Values stay 0–255: the model rescales inside its graph.
    """
    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected 48×48 faces, got shape {faces.shape}")
    return faces.astype(np.float32, copy=False)[..., None]


def mirrored(faces: np.ndarray) -> np.ndarray:
    """48×48 grey faces (one or a batch) flipped left to right.

    The second view of test-time flip averaging; the one flip of a face in the
    repository, so training, evaluation and the client mirror the same way.
    """
    faces = np.asarray(faces)
    if faces.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected 48×48 faces, got shape {faces.shape}")
    return np.ascontiguousarray(faces[..., ::-1])
