"""The face pipeline on real photos and on frames the tests make."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from client_fixtures import FACES_DIR, FER_VAL, face_counts, model_path

from fer_tui.classifier import EmotionClassifier, ModelError
from fer_tui.emotions import LABELS, NUM_CLASSES
from fer_tui.pipeline import (
    CameraError,
    CaptureThread,
    FacePipeline,
    FrameListSource,
    ProbabilitySmoother,
    open_source,
    tag_for,
)
from fer_tui.pipeline.analysis import Analysis
from fer_tui.pipeline.detector import MODEL_INFO, DetectorError, FaceDetector, load_model
from fer_tui.preprocess import FACE_MARGIN, FACE_SIZE, Box

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> EmotionClassifier:
    return EmotionClassifier(model_path(tmp_path_factory))


@pytest.mark.realdata
@pytest.mark.timeout(120)
def test_faces_found_where_the_readme_says(detector: FaceDetector) -> None:
    counts = face_counts()
    assert len(counts) == 12
    found = {}
    for name in counts:
        frame = cv2.imread(str(FACES_DIR / name))
        assert frame is not None, name
        faces = detector.detect(frame)
        found[name] = len(faces)
        height, width = frame.shape[:2]
        for box, confidence in faces:
            assert 0.5 <= confidence <= 1.0
            # Clipped: YuNet's box for a face cut by the edge starts outside the frame.
            assert box.x >= 0 and box.y >= 0 and box.w > 0 and box.h > 0
            assert box.x + box.w <= width and box.y + box.h <= height
    assert found == counts


@pytest.mark.realdata
def test_face_cut_by_the_top_edge_is_clipped_to_the_frame(detector: FaceDetector) -> None:
    face_counts()
    frame = cv2.imread(str(FACES_DIR / "group_meeting.jpg"))
    boxes = [box for box, _ in detector.detect(frame)]
    assert len(boxes) == 5
    assert sum(box.y == 0 for box in boxes) == 1  # the 5th face, only nose to chin in frame


@pytest.mark.realdata
@pytest.mark.timeout(120)
def test_detector_frames_fer2013_faces_as_the_crop_margin_assumes(detector: FaceDetector) -> None:
    """The crop must frame a live face as FER2013 framed its faces (see preprocess.FACE_MARGIN).

    The same measurement as ``bench/client_bench.py``'s margin line, on 200 val images:
    upscaled to 192 px and edge-padded so the detector sees a whole face.
    """
    if not FER_VAL.is_file():
        pytest.skip(f"FER2013 validation data not found at {FER_VAL}")
    with np.load(FER_VAL) as archive:
        images = archive["x"]
    picks = np.random.default_rng(0).choice(len(images), 200, replace=False)
    whole = FaceDetector(max_side=10_000)
    side, pad = 192, 96
    ratios = []
    for i in picks:
        image = cv2.resize(images[i], (side, side), interpolation=cv2.INTER_CUBIC)
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = whole.largest(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        if found is not None:
            ratios.append(max(found[0].w, found[0].h) / side)
    assert len(ratios) >= 0.9 * len(picks)
    margin = (1 / statistics.median(ratios) - 1) / 2
    assert abs(margin - FACE_MARGIN) < 0.02, margin


def test_bundled_model_is_the_recorded_file() -> None:
    info = json.loads(MODEL_INFO.read_text(encoding="utf-8"))
    model = MODEL_INFO.parent / info["file"]
    assert model.stat().st_size == info["file_bytes"] == 232_589
    digest = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == info["sha256"] == digest
    assert "MIT License" in (MODEL_INFO.parent / info["license_file"]).read_text(encoding="utf-8")
    assert load_model() == model.read_bytes()


def test_altered_or_missing_model_is_refused(tmp_path: Path) -> None:
    info_path = tmp_path / MODEL_INFO.name
    shutil.copy(MODEL_INFO, info_path)
    model = tmp_path / json.loads(info_path.read_text(encoding="utf-8"))["file"]
    with pytest.raises(DetectorError, match="missing"):
        load_model(info_path)
    model.write_bytes(b"\0" * 1000)
    with pytest.raises(DetectorError, match="SHA-256"):
        load_model(info_path)


@pytest.mark.realdata
@pytest.mark.timeout(120)
def test_pipeline_crops_each_photo_to_48x48_and_labels_it(
    detector: FaceDetector, classifier: EmotionClassifier
) -> None:
    counts = face_counts()
    for name in counts:
        frame = cv2.imread(str(FACES_DIR / name))
        analysis = FacePipeline(detector, classifier).process(frame)
        assert analysis.box is not None, name
        assert analysis.crop is not None
        assert analysis.crop.shape == (FACE_SIZE, FACE_SIZE)
        assert analysis.crop.dtype == np.uint8
        assert analysis.label in LABELS
        assert 1 / NUM_CLASSES <= analysis.confidence <= 1.0


@pytest.mark.realdata
def test_largest_face_is_chosen_in_the_group_photo(detector: FaceDetector) -> None:
    face_counts()
    frame = cv2.imread(str(FACES_DIR / "group_meeting.jpg"))
    faces = detector.detect(frame)
    box, _ = detector.largest(frame)
    assert box.area == max(b.area for b, _ in faces)


def test_blank_frame_has_no_face_and_no_tag(detector: FaceDetector) -> None:
    frame = np.full((480, 640, 3), 127, np.uint8)
    analysis = FacePipeline(detector, None).process(frame)
    assert analysis.box is None and analysis.label is None
    assert analysis.reason == "no face"
    tag = tag_for(analysis, threshold=0.1)
    assert not tag.tagged and tag.reason == "no face"


def test_classifier_returns_seven_probabilities(classifier: EmotionClassifier) -> None:
    rng = np.random.default_rng(1)
    for _ in range(3):
        probs = classifier.predict(rng.integers(0, 256, (48, 48), dtype=np.uint8))
        assert probs.shape == (NUM_CLASSES,)
        assert probs.min() >= 0.0
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_classifier_rejects_wrong_input(classifier: EmotionClassifier, tmp_path) -> None:
    with pytest.raises(ValueError):
        classifier.predict(np.zeros((32, 32), np.uint8))
    with pytest.raises(ModelError):
        EmotionClassifier(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        EmotionClassifier(junk)


class _FixedDetector:
    def __init__(self, box: Box | None) -> None:
        self.box = box

    def largest(self, frame: np.ndarray) -> tuple[Box, float] | None:
        return None if self.box is None else (self.box, 0.9)


class _ScriptedClassifier:
    """Returns the next scripted probability vector on each call."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)

    def classify(self, face48: np.ndarray) -> np.ndarray:
        probs = np.full(NUM_CLASSES, 0.02, np.float32)
        probs[LABELS.index(self.labels.pop(0))] = 0.88
        return probs


def test_smoothing_ignores_a_one_frame_blink() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    script = ["happy", "happy", "happy", "sad", "happy"]
    pipeline = FacePipeline(_FixedDetector(Box(20, 20, 50, 50)), _ScriptedClassifier(script))
    labels = [pipeline.process(frame, now=i * 0.25).label for i in range(len(script))]
    assert labels == ["happy"] * 5


def test_smoother_forgets_old_frames_and_switches_on_a_real_change() -> None:
    smoother = ProbabilitySmoother(window=3, max_age=1.0)
    happy = np.eye(NUM_CLASSES)[LABELS.index("happy")]
    sad = np.eye(NUM_CLASSES)[LABELS.index("sad")]
    smoother.update(happy, 0.0)
    smoother.update(happy, 0.1)
    assert np.argmax(smoother.update(sad, 5.0)) == LABELS.index("sad")
    assert len(smoother) == 1
    with pytest.raises(ValueError):
        ProbabilitySmoother(window=0)


def test_low_confidence_is_untagged_with_a_reason() -> None:
    analysis = Analysis(time.monotonic(), None, Box(0, 0, 10, 10), None, "fear", 0.3)
    assert not tag_for(analysis, threshold=0.5).tagged
    assert "unsure" in (tag_for(analysis, threshold=0.5).reason or "")
    assert tag_for(analysis, threshold=0.2).label == "fear"
    stale = Analysis(time.monotonic() - 60, None, Box(0, 0, 10, 10), None, "fear", 0.9)
    assert tag_for(stale, threshold=0.2).reason == "camera stalled"


@pytest.mark.timeout(30)
def test_capture_thread_keeps_newest_result_ready(classifier: EmotionClassifier) -> None:
    frames = [np.full((120, 160, 3), v, np.uint8) for v in (10, 200)]
    pipeline = FacePipeline(_FixedDetector(Box(40, 30, 60, 60)), classifier)
    thread = CaptureThread(FrameListSource(frames, interval=0.02), pipeline, fps=20)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while thread.frames_analysed < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert thread.frames_analysed >= 3
        start = time.perf_counter()
        tag = thread.tag(threshold=0.0)
        assert time.perf_counter() - start < 0.01  # reads, doesn't compute
        assert tag.label in LABELS
    finally:
        thread.stop()
    assert not thread.is_alive()


def test_open_source_specs(tmp_path) -> None:
    assert open_source("none") is None
    with pytest.raises(CameraError):
        open_source(str(tmp_path / "nothing-here"))
    with pytest.raises(CameraError):
        open_source(str(tmp_path))  # empty folder
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10, 3), np.uint8))
    source = open_source(str(tmp_path), interval=0.0)
    assert source is not None
    assert source.read().shape == (10, 10, 3)
    source.close()


def test_video_file_source_loops(tmp_path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 100.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG")
    for value in (0, 80, 160):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    source = open_source(str(path))
    assert source is not None and source.description == "video clip.avi"
    means = [round(float(source.read().mean()) / 80) for _ in range(7)]
    source.close()
    assert means == [0, 1, 2, 0, 1, 2, 0]  # played in order, then looped
