"""Capture → detect → crop → classify → smooth, with no UI code (tests drive it directly)."""

from fer_tui.pipeline.analysis import (
    DEFAULT_THRESHOLD,
    Analysis,
    CaptureThread,
    FacePipeline,
    Tag,
    tag_for,
)
from fer_tui.pipeline.camera import CameraError, FrameListSource, FrameSource, open_source
from fer_tui.pipeline.smoothing import ProbabilitySmoother

__all__ = [
    "DEFAULT_THRESHOLD",
    "Analysis",
    "CameraError",
    "CaptureThread",
    "FacePipeline",
    "FrameListSource",
    "FrameSource",
    "ProbabilitySmoother",
    "Tag",
    "open_source",
    "tag_for",
]
