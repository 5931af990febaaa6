"""Fixtures shared by every test module: where the repo and the shared data are."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: CI clones the repo with ``shared/`` beside it; so does the development checkout.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    """The real FER2013 arrays; the test skips where ``../shared`` is absent."""
    path = SHARED_DATA / "fer2013"
    if not (path / "val.npz").exists():
        pytest.skip(f"real FER2013 data not found at {path}")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The real face photos; the test skips where ``../shared`` is absent."""
    path = SHARED_DATA / "faces"
    if not (path / "README.md").exists():
        pytest.skip(f"real face photos not found at {path}")
    return path
