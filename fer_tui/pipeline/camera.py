"""Frame sources: a webcam, a looped video file, a cycled folder of images, a list.

``open_source(spec)`` turns the ``--camera`` value into a source; ``"none"``
gives ``None`` (chat without tags). Every source has the same two methods,
``read()`` (block until the next frame; ``None`` if none came) and
``close()``. Sources pace themselves like a camera would, so the capture
thread never spins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def _cv2() -> Any:
    """Import OpenCV with its warnings off: they would be printed over the TUI."""
    import cv2

    logging = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    return cv2


class CameraError(RuntimeError):
    """The camera source cannot be opened; the chat goes on without tags."""


class FrameSource(Protocol):
    """Something that yields BGR frames."""

    description: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class _Paced:
    """Sleep so that successive ``tick()`` calls are at least ``interval`` apart."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


class DeviceSource:
    """A webcam by OpenCV device index."""

    def __init__(self, index: int) -> None:
        cv2 = _cv2()

        self.description = f"device {index}"
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"no camera at index {index}")

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return frame if ok else None

    def close(self) -> None:
        self._capture.release()


class VideoFileSource:
    """A video file, played at its own frame rate and looped."""

    def __init__(self, path: Path) -> None:
        cv2 = _cv2()

        self.description = f"video {path.name}"
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"cannot open video {path}")
        fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self._pace = _Paced(1.0 / fps if 1.0 <= fps <= 240.0 else 1.0 / 25.0)

    def read(self) -> np.ndarray | None:
        import cv2

        self._pace.tick()
        ok, frame = self._capture.read()
        if not ok:  # end of file: loop
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        return frame if ok else None

    def close(self) -> None:
        self._capture.release()


class FrameListSource:
    """Frames held in memory, cycled, each shown for ``interval`` seconds."""

    def __init__(
        self, frames: Sequence[np.ndarray], interval: float = 0.2, description: str = "frames"
    ) -> None:
        if not frames:
            raise CameraError("no frames to show")
        self.description = description
        self._frames = list(frames)
        self._index = 0
        self._pace = _Paced(interval)

    def read(self) -> np.ndarray | None:
        self._pace.tick()
        frame = self._frames[self._index % len(self._frames)]
        self._index += 1
        return frame

    def close(self) -> None:
        self._frames.clear()


def load_image_folder(folder: Path) -> list[np.ndarray]:
    """Read every image in ``folder`` (sorted by name) as BGR frames."""
    import cv2

    frames = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                frames.append(frame)
    return frames


def open_source(spec: str | int | None, interval: float = 1.0) -> FrameSource | None:
    """Open the ``--camera`` source ``spec``: device index, video file, image folder or none.

    ``interval`` is how long each image of a folder stays up. Raises
    :class:`CameraError` with a readable message when the source can't be used.
    """
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() in {"", "none", "off"}:
        return None
    if text.isdigit():
        return DeviceSource(int(text))
    path = Path(text).expanduser()
    if path.is_dir():
        frames = load_image_folder(path)
        if not frames:
            raise CameraError(f"no images in folder {path}")
        return FrameListSource(frames, interval, description=f"folder {path.name}")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        import cv2

        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise CameraError(f"cannot read image {path}")
        return FrameListSource([frame], interval, description=f"image {path.name}")
    if path.is_file():
        return VideoFileSource(path)
    raise CameraError(f"camera source not found: {text}")
