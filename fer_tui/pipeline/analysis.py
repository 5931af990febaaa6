"""Frame → face → 48×48 crop → emotion, and the tag a message gets on Enter.

:class:`FacePipeline` is pure computation (tests drive it frame by frame);
:class:`CaptureThread` keeps a source open in the background, holds only the
newest frame and analyses it a few times a second, so pressing Enter just reads
:attr:`CaptureThread.latest` — no camera start-up, no inference on the UI thread.
No Textual imports here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fer_tui.config import DEFAULT_THRESHOLD
from fer_tui.emotions import LABELS
from fer_tui.pipeline.camera import FrameSource
from fer_tui.pipeline.smoothing import ProbabilitySmoother
from fer_tui.preprocess import Box, crop_face, to_gray


class Detector(Protocol):
    def largest(self, frame: np.ndarray) -> tuple[Box, float] | None: ...


class Classifier(Protocol):
    def classify(self, face48: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Analysis:
    """What the pipeline made of one frame. Lives in memory only."""

    taken_at: float
    frame: np.ndarray | None = field(repr=False, compare=False)
    box: Box | None = None
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)
    label: str | None = None
    confidence: float = 0.0
    reason: str | None = None  # why there is no label, when there is none
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class Tag:
    """The emotion a message carries, or why it carries none."""

    label: str | None
    confidence: float = 0.0
    reason: str | None = None

    @property
    def tagged(self) -> bool:
        return self.label is not None


class FacePipeline:
    """Detect the largest face, crop it as training did, classify, smooth."""

    def __init__(
        self,
        detector: Detector,
        classifier: Classifier | None,
        smoother: ProbabilitySmoother | None = None,
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.smoother = smoother or ProbabilitySmoother()

    def process(self, frame: np.ndarray, now: float | None = None) -> Analysis:
        """Analyse one BGR frame taken at ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        start = time.perf_counter()
        found = self.detector.largest(frame)
        if found is None:
            self.smoother.reset()
            return Analysis(now, frame, reason="no face", elapsed_ms=_since(start))
        box, _ = found
        crop = crop_face(to_gray(frame), box)
        if self.classifier is None:
            return Analysis(now, frame, box, crop, reason="no model", elapsed_ms=_since(start))
        probs = self.smoother.update(self.classifier.classify(crop), now)
        best = int(np.argmax(probs))
        return Analysis(
            now, frame, box, crop, LABELS[best], float(probs[best]), elapsed_ms=_since(start)
        )


def _since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def tag_for(analysis: Analysis | None, threshold: float, max_age: float = 5.0) -> Tag:
    """Return the tag for a message sent now, given the newest analysis."""
    if analysis is None:
        return Tag(None, reason="camera starting")
    if time.monotonic() - analysis.taken_at > max_age:
        return Tag(None, reason="camera stalled")
    if analysis.label is None:
        return Tag(None, reason=analysis.reason)
    if analysis.confidence < threshold:
        return Tag(None, analysis.confidence, reason=f"unsure ({analysis.confidence:.0%})")
    return Tag(analysis.label, round(analysis.confidence, 3))


class CaptureThread(threading.Thread):
    """Read ``source`` continuously; analyse the newest frame at most ``fps`` times a second."""

    def __init__(
        self,
        source: FrameSource,
        pipeline: FacePipeline,
        fps: float = 4.0,
        on_analysis: Callable[[Analysis], None] | None = None,
    ) -> None:
        super().__init__(name="fer-capture", daemon=True)
        self.source = source
        self.pipeline = pipeline
        self.interval = 1.0 / fps
        self.on_analysis = on_analysis
        self.latest: Analysis | None = None
        self.error: str | None = None
        self.frames_read = 0
        self.frames_analysed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        last = 0.0
        try:
            while not self._stop_event.is_set():
                frame = self.source.read()
                if frame is None:
                    self.error = "camera gave no frame"
                    time.sleep(0.2)
                    continue
                self.frames_read += 1
                now = time.monotonic()
                if now - last < self.interval:
                    continue
                last = now
                self.latest = self.pipeline.process(frame, now)
                self.frames_analysed += 1
                self.error = None
                if self.on_analysis is not None:
                    self.on_analysis(self.latest)
        except Exception as exc:  # keep the chat alive; the UI shows the reason
            self.error = f"camera stopped: {exc}"
        finally:
            self.source.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def tag(self, threshold: float = DEFAULT_THRESHOLD) -> Tag:
        """The tag for a message sent now: reads the result that is already there."""
        if self.error is not None and self.latest is None:
            return Tag(None, reason=self.error)
        return tag_for(self.latest, threshold)
