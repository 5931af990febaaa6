"""The ``fer`` PyPI package as a benchmark peer, in its own venv ``.bench-venv-fer/``.

``fer`` needs TensorFlow with the legacy ``tf-keras`` and has loose pins, so it
lives apart from the project's ``.venv``. Benches import this module (stdlib only
at import time) and call :func:`ensure_fer_venv` for the venv's python; that
python then runs this same file as a worker::

    .bench-venv-fer/bin/python bench/fer_peer.py classify FACES.npz OUT.json [--repeats N]

which scores ``fer``'s own mini-Xception (the ``.hdf5`` inside its wheel) on the
faces and times one face at a time on one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FER_VENV = REPO / ".bench-venv-fer"
#: What ``from fer.fer import FER`` (25.10.3) imports, installed beside it; fer itself goes in
#: with --no-deps. setuptools<81 still has the ``pkg_resources`` fer uses to find its files.
FER_DEPS = (
    "tensorflow-cpu==2.21.*",
    "tf-keras==2.21.*",
    "opencv-python-headless<5",
    "numpy",
    "requests",
    "pillow",
    "pandas",
    "tqdm",
    "setuptools<81",
)
FER_PACKAGE = "fer==25.10.3"


def ensure_fer_venv() -> Path:
    """Return the python of ``.bench-venv-fer/``, creating and filling the venv on first use."""
    python = FER_VENV / "bin" / "python"
    ready = FER_VENV / ".ready"  # holds the package list it was filled with
    wanted = "\n".join((*FER_DEPS, FER_PACKAGE))
    if ready.exists() and ready.read_text() == wanted:
        return python
    print(
        f"creating {FER_VENV.name}/ for the fer peer (one-off, downloads TensorFlow) ...",
        file=sys.stderr,
        flush=True,
    )
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(FER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # tf-keras pins "tensorflow", which would pull a second, CUDA-sized TensorFlow:
    # install it and fer without dependencies beside tensorflow-cpu.
    subprocess.run([*pip, *(d for d in FER_DEPS if not d.startswith("tf-keras"))], check=True)
    subprocess.run(
        [*pip, "--no-deps", *(d for d in FER_DEPS if d.startswith("tf-keras")), FER_PACKAGE],
        check=True,
    )
    ready.write_text(wanted)
    return python


def fer_data_folder() -> Path:
    """``fer/data`` inside the installed package, found without importing fer (worker side)."""
    from importlib.util import find_spec

    spec = find_spec("fer")  # locating it skips fer's import-time detector stack
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the fer package is not installed in this python")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def classify(faces_path: Path, out_path: Path, repeats: int) -> None:
    """Worker: both of fer's models on ``faces_path`` (x uint8 N×48×48), one thread.

    ``emotion_model.hdf5`` is the mini-Xception; ``emotion_model_quantized.tflite``
    (weights-only quantised, float input) is what ``FER()`` uses by default since 25.x.
    Faces get fer's own preprocessing: resized to the model's 64×64 input, 0–255 → -1..1.
    """
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from tf_keras.models import load_model

    folder = fer_data_folder()
    keras_path = folder / "emotion_model.hdf5"
    tflite_path = folder / "emotion_model_quantized.tflite"
    model = load_model(keras_path, compile=False)
    with np.load(faces_path) as archive:
        x = archive["x"]
    height, width = model.input_shape[1:3]
    if (height, width) != x.shape[1:]:
        import cv2  # as FER.detect_emotions: cv2.resize of each face crop

        x = np.stack([cv2.resize(face, (width, height)) for face in x])
    batch = ((x.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]

    # The Keras model: probabilities in batches; latency of one face per call through a
    # compiled function (faster than FER's eager call, so this favours the peer).
    infer = tf.function(lambda t: model(t, training=False))
    keras_report = {
        "model_file": keras_path.name,
        "model_bytes": keras_path.stat().st_size,
        "parameters": int(model.count_params()),
        "probs": model.predict(batch, batch_size=256, verbose=0).tolist(),
        "latency_s": _time(lambda face: infer(tf.constant(face)).numpy(), batch, repeats),
    }

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    (detail_in,), (detail_out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run_tflite(face):  # FER._classify_emotions' TFLite path, one face
        interpreter.set_tensor(detail_in["index"], face)
        interpreter.invoke()
        return interpreter.get_tensor(detail_out["index"])[0]

    tflite_report = {
        "model_file": tflite_path.name,
        "model_bytes": tflite_path.stat().st_size,
        "parameters": keras_report["parameters"],
        "probs": [run_tflite(face[None]).tolist() for face in batch],
        "latency_s": _time(run_tflite, batch, repeats),
    }
    out_path.write_text(
        json.dumps(
            {
                "input_shape": [height, width],
                "versions": {"tensorflow": tf.__version__, "fer": _fer_version()},
                "models": {"tflite": tflite_report, "hdf5": keras_report},
            }
        )
    )


def _time(run, batch, repeats: int) -> list[float]:
    """Seconds per single-face call of ``run``, after a warm-up."""
    for face in batch[:50]:
        run(face[None])
    times = []
    for i in range(repeats):
        face = batch[i % len(batch)][None]
        started = time.perf_counter()
        run(face)
        times.append(time.perf_counter() - started)
    return times


def _fer_version() -> str:
    from importlib.metadata import version

    return version("fer")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "classify":
        raise SystemExit(__doc__)
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 500
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    classify(Path(argv[1]), Path(argv[2]), repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
