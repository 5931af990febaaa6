"""The client runs on LiteRT alone: classifying a face never loads TensorFlow or Keras.

``fer_tui.classifier`` keeps ``tensorflow.lite`` as the brief's last-resort
fallback (only reached when neither ``ai_edge_litert`` nor ``tflite_runtime`` is
installed); this checks that a normal install never gets there.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

SCRIPT = """
import sys
import numpy as np
import fer_tui.app, fer_tui.__main__, hub.server
from fer_tui.classifier import EmotionClassifier
probs = EmotionClassifier("fer_tui/models/emotion_int8.tflite").predict(
    np.full((48, 48), 128, np.uint8))
assert probs.shape == (7,), probs.shape
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf_keras"})
print(",".join(loaded) or "none")
"""


def test_classifying_a_face_loads_no_tensorflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none"
