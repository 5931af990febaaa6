"""Load FER2013 in the three layouts users have: ``.npz``, Kaggle image folders, ``fer2013.csv``.

Every loader returns a :class:`FaceSet` of uint8 N×48×48 faces and int labels in
:data:`fer_tui.emotions.LABELS` order. Mistakes a user can make (missing path,
wrong layout, unknown class folder, unreadable image, empty split) raise
:class:`DataError` with one clear sentence; the CLI prints it without a traceback.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_tui.emotions import LABELS, NUM_CLASSES
from fer_tui.preprocess import FACE_SIZE

#: Where the shared FER2013 arrays live: ``<repo>/../shared/data/fer2013`` (also on CI).
SHARED_FER2013 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm"})

#: ``fer2013.csv``'s ``Usage`` values, by the split names users type.
CSV_SPLITS = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}


class DataError(Exception):
    """A data set that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class FaceSet:
    """Faces and their labels, plus where they came from."""

    x: np.ndarray  # uint8, N×48×48
    y: np.ndarray  # int64, N
    source: str

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=NUM_CLASSES)


def load_faces(path: str | Path, split: str = "train") -> FaceSet:
    """Load a split from ``path``, choosing the loader by the layout found there.

    ``path`` is an ``.npz`` file, a ``fer2013.csv`` file (``split`` picks the
    ``Usage`` rows) or an image-folder root: either ``<root>/<class>/*.jpg``
    itself or a folder holding ``<split>/<class>/*.jpg``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix == ".npz":
        faces = load_npz(path)
    elif path.is_file() and path.suffix == ".csv":
        faces = load_csv(path, split)
    elif path.is_dir():
        faces = load_image_folder(path, split)
    else:
        raise DataError(f"{path}: expected an .npz file, a fer2013 .csv file or an image folder")
    if len(faces) == 0:
        raise DataError(f"{path}: the {split!r} split holds no images")
    return faces


def load_npz(path: Path) -> FaceSet:
    """Load ``x`` (uint8 N×48×48) and ``y`` from an ``.npz`` file."""
    try:
        with np.load(path) as archive:
            if "x" not in archive or "y" not in archive:
                raise DataError(f"{path}: an .npz needs arrays 'x' and 'y', found {archive.files}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    return _checked(x, y, str(path))


def load_csv(path: Path, split: str) -> FaceSet:
    """Load one ``Usage`` split of the original ``fer2013.csv`` (emotion, pixels, Usage)."""
    usage = CSV_SPLITS.get(split.lower())
    if usage is None:
        raise DataError(f"unknown split {split!r}; expected one of {sorted(set(CSV_SPLITS))}")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: not a fer2013 CSV, missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            if row["Usage"] != usage:
                continue
            xs.append(_parse_pixels(row["pixels"], path, line))
            ys.append(_parse_label(row["emotion"], path, line))
    x = np.stack(xs) if xs else np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8)
    return _checked(x, np.asarray(ys, dtype=np.int64), f"{path}[{usage}]")


def load_image_folder(root: Path, split: str) -> FaceSet:
    """Load ``<root>/<class>/*`` or ``<root>/<split>/<class>/*`` (Kaggle's layout)."""
    import cv2

    folder = _class_root(root, split)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = class_dir.name.lower()
        if label not in LABELS:
            raise DataError(
                f"{class_dir}: unknown class folder {class_dir.name!r}; "
                f"expected folders named {', '.join(LABELS)}"
            )
        for image_path in sorted(class_dir.iterdir()):
            if image_path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise DataError(f"{image_path}: not a readable image")
            if image.shape != (FACE_SIZE, FACE_SIZE):
                image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
            xs.append(image)
            ys.append(LABELS.index(label))
    x = np.stack(xs) if xs else np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8)
    return _checked(x, np.asarray(ys, dtype=np.int64), str(folder))


def shared_split(name: str) -> Path | None:
    """``<repo>/../shared/data/fer2013/<name>.npz`` if it exists, else ``None``."""
    path = SHARED_FER2013 / f"{name}.npz"
    return path if path.is_file() else None


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a file (of every file, in order, for a folder)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _class_root(root: Path, split: str) -> Path:
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if set(subdirs) & set(LABELS):
        return root
    for name in (split, *[k for k, v in CSV_SPLITS.items() if v == CSV_SPLITS.get(split)]):
        if name in subdirs:
            return subdirs[name]
    raise DataError(
        f"{root}: expected class folders ({', '.join(LABELS)}) "
        f"or a {split!r} folder holding them; found {sorted(subdirs) or 'no folders'}"
    )


def _parse_pixels(text: str, path: Path, line: int) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise DataError(f"{path}:{line}: 'pixels' must be space-separated integers") from None
    in_range = values.min(initial=0) >= 0 and values.max(initial=0) <= 255
    if values.size != FACE_SIZE * FACE_SIZE or not in_range:
        raise DataError(f"{path}:{line}: 'pixels' must hold {FACE_SIZE * FACE_SIZE} values 0-255")
    return values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def _parse_label(text: str, path: Path, line: int) -> int:
    try:
        label = int(text)
    except ValueError:
        label = -1
    if not 0 <= label < NUM_CLASSES:
        raise DataError(f"{path}:{line}: 'emotion' must be 0-{NUM_CLASSES - 1}, got {text!r}")
    return label


def _checked(x: np.ndarray, y: np.ndarray, source: str) -> FaceSet:
    if x.ndim != 3 or x.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise DataError(f"{source}: faces must be N×{FACE_SIZE}×{FACE_SIZE}, got {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{source}: faces must be uint8 grey levels, got {x.dtype}")
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{source}: {len(x)} faces but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(f"{source}: labels must be 0-{NUM_CLASSES - 1}")
    return FaceSet(x=x, y=y, source=source)
