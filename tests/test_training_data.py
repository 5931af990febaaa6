"""The three FER2013 loaders on tiny data each test writes, and their user errors."""

from __future__ import annotations

import numpy as np
import pytest
from training_fixtures import tiny_faces, write_csv, write_image_folder, write_npz

from training.data import DataError, file_sha256, load_faces


def test_npz_round_trip(tmp_path):
    x, y = tiny_faces()
    faces = load_faces(write_npz(tmp_path / "faces.npz", x, y))
    np.testing.assert_array_equal(faces.x, x)
    np.testing.assert_array_equal(faces.y, y)
    assert faces.class_counts().tolist() == [8] * 7


def test_csv_usage_column_picks_the_split(tmp_path):
    x, y = tiny_faces(per_class=3)
    csv_path = write_csv(
        tmp_path / "fer2013.csv",
        {
            "Training": (x[:15], y[:15]),
            "PublicTest": (x[15:], y[15:]),
        },
    )
    train, val = load_faces(csv_path, "train"), load_faces(csv_path, "val")
    np.testing.assert_array_equal(train.x, x[:15])
    np.testing.assert_array_equal(val.y, y[15:])
    with pytest.raises(DataError, match="holds no images"):
        load_faces(csv_path, "test")


@pytest.mark.parametrize("nested", [False, True], ids=["class-root", "split-root"])
def test_image_folders_in_both_layouts(tmp_path, nested):
    x, y = tiny_faces(per_class=2)
    root = tmp_path / "fer"
    write_image_folder(root / "train" if nested else root, x, y)
    faces = load_faces(root, "train")
    # Files are read class by class, so compare as sorted (label, pixels) pairs.
    order = np.lexsort((x.reshape(len(x), -1).sum(axis=1), y))
    got = np.lexsort((faces.x.reshape(len(faces), -1).sum(axis=1), faces.y))
    np.testing.assert_array_equal(faces.y[got], y[order])
    np.testing.assert_array_equal(faces.x[got], x[order])


def test_image_folder_resizes_other_sizes(tmp_path):
    import cv2

    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "big.jpg"), np.full((96, 80), 200, np.uint8))
    faces = load_faces(tmp_path)
    assert faces.x.shape == (1, 48, 48)
    assert faces.y.tolist() == [3]
    assert abs(int(faces.x.mean()) - 200) <= 2


def test_file_sha256_changes_with_content(tmp_path):
    x, y = tiny_faces(per_class=1)
    first = file_sha256(write_npz(tmp_path / "a.npz", x, y))
    assert len(first) == 64
    assert first == file_sha256(tmp_path / "a.npz")
    x[0, 0, 0] ^= 1
    assert first != file_sha256(write_npz(tmp_path / "a.npz", x, y))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.npz", "no such file"),
        (lambda d: _touch(d / "faces.txt"), "expected an .npz"),
        (lambda d: _npz(d, x=np.zeros((2, 48, 48), np.uint8)), "needs arrays 'x' and 'y'"),
        (lambda d: _npz(d, x=np.zeros((2, 32, 32), np.uint8), y=[0, 1]), "N×48×48"),
        (lambda d: _npz(d, x=np.zeros((2, 48, 48)), y=[0, 1]), "uint8"),
        (lambda d: _npz(d, x=np.zeros((2, 48, 48), np.uint8), y=[0, 9]), "labels must be 0-6"),
        (lambda d: _npz(d, x=np.zeros((0, 48, 48), np.uint8), y=[]), "holds no images"),
        (lambda d: _touch(d / "bad.npz", b"not a zip"), "not a readable .npz"),
        (lambda d: _touch(d / "x.csv", b"a,b\n1,2\n"), "missing column"),
        (
            lambda d: _touch(d / "x.csv", b"emotion,pixels,Usage\n3,1 2 3,Training\n"),
            "must hold 2304 values",
        ),
        (lambda d: _folders(d, "somewhere/"), "expected class folders"),
        (lambda d: _folders(d, "train/happiness/"), "unknown class folder"),
        (lambda d: _folders(d, "sad/broken.jpg"), "not a readable image"),
        (lambda d: _folders(d, "sad/"), "holds no images"),
    ],
    ids=[
        "missing",
        "unknown-format",
        "npz-keys",
        "npz-shape",
        "npz-dtype",
        "npz-labels",
        "npz-empty",
        "npz-corrupt",
        "csv-columns",
        "csv-pixels",
        "folder-layout",
        "folder-class",
        "folder-corrupt-image",
        "folder-empty",
    ],
)
def test_bad_data_raises_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as caught:
        load_faces(path, "train")
    assert "\n" not in str(caught.value)


def _touch(path, content: bytes = b""):
    path.write_bytes(content)
    return path


def _folders(folder, entry: str):
    """Make ``folder/root/<entry>``: a folder if it ends in '/', else a corrupt JPEG."""
    root = folder / "root"
    path = root / entry
    if entry.endswith("/"):
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _npz(folder, **arrays):
    path = folder / "faces.npz"
    np.savez(path, **arrays)
    return path
