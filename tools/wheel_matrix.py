"""Which runtime dependencies have a binary wheel on which platform and CPython.

Reads the requirements from ``pyproject.toml`` (the base dependencies, which
are the hub's, plus the ``client`` extra by default), evaluates their
environment markers for each target, and asks pip which wheel it would pick
there with ``--only-binary=:all: --no-deps --platform ... --python-version ...``.
A cell shows the version pip chose, or ``—`` where no wheel fits: that is a
place where ``pip install 'fer-tms[client]'`` fails or falls back to building
from source.

    python tools/wheel_matrix.py                    # hub + client, all targets
    python tools/wheel_matrix.py --extra client --extra redis
    python tools/wheel_matrix.py --download          # fetch the wheels (slow: ~1 GB)

By default pip runs ``pip install --dry-run --report``: the same finder and tag
matching as ``pip download``, but it reads only the wheels' metadata (PEP 658)
instead of fetching them. ``--download`` runs ``pip download`` itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev extra installs tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")


@dataclasses.dataclass(frozen=True)
class Target:
    """A machine users have: the wheel platform tags it accepts and its marker values."""

    name: str
    platforms: tuple[str, ...]
    sys_platform: str
    platform_system: str
    platform_machine: str


def _manylinux(arch: str, glibc_minor: int) -> tuple[str, ...]:
    # pip does not widen an explicit manylinux_2_NN tag to older glibc: list them all.
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 4, -1)]
    legacy = ["manylinux2014"] + (["manylinux2010", "manylinux1"] if arch == "x86_64" else [])
    return (*tags, *(f"{name}_{arch}" for name in legacy))


TARGETS: tuple[Target, ...] = (
    # glibc 2.35: Ubuntu 22.04; Raspberry Pi OS bookworm and Debian 12 have 2.36.
    Target("Linux x86-64", _manylinux("x86_64", 35), "linux", "Linux", "x86_64"),
    Target("Linux aarch64", _manylinux("aarch64", 35), "linux", "Linux", "aarch64"),
    # pip widens a macOS tag to every older macOS and to universal2.
    Target("macOS arm64", ("macosx_14_0_arm64",), "darwin", "Darwin", "arm64"),
    Target("macOS x86-64", ("macosx_15_0_x86_64",), "darwin", "Darwin", "x86_64"),
    Target("Windows x86-64", ("win_amd64",), "win32", "Windows", "AMD64"),
)


def requirements(extras: Sequence[str], pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The base dependencies plus those of ``extras``, as written in ``pyproject``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = list(project["dependencies"])
    for extra in extras:
        try:
            found += project["optional-dependencies"][extra]
        except KeyError:
            raise SystemExit(f"wheel_matrix: pyproject.toml has no extra {extra!r}") from None
    return found


def applies(requirement: Requirement, target: Target, python: str) -> bool:
    """Whether ``requirement``'s marker selects it on ``target`` under ``python``."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate(
        {
            "sys_platform": target.sys_platform,
            "platform_system": target.platform_system,
            "platform_machine": target.platform_machine,
            "python_version": python,
            "python_full_version": f"{python}.0",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "os_name": "nt" if target.sys_platform == "win32" else "posix",
            "extra": "",
        }
    )


def chosen_wheel(spec: str, target: Target, python: str, download: bool) -> str | None:
    """The file name of the wheel pip picks for ``spec`` there, or None if there is none."""
    common = [
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        *(arg for tag in target.platforms for arg in ("--platform", tag)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if download:
            command = ["download", *common, "--dest", tmp, spec]
        else:
            report = Path(tmp) / "report.json"
            command = ["install", "--dry-run", "--ignore-installed", "--target", tmp]
            command += [*common, "--report", str(report), spec]
        done = subprocess.run(
            [sys.executable, "-m", "pip", *command],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            if "No matching distribution" in done.stderr or "from versions" in done.stderr:
                return None
            raise RuntimeError(f"pip {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        if download:
            return next(p.name for p in Path(tmp).glob("*.whl"))
        url = json.loads(report.read_text())["install"][0]["download_info"]["url"]
        return str(url).rsplit("/", 1)[-1]


def wheel_version(filename: str | None) -> str:
    return "—" if filename is None else filename.split("-")[1]


def summarize(versions: dict[str, str]) -> str:
    """``{python: version}`` as one cell: ``2.3.0``, or ``3.10–3.13 2.3.0, 3.14 —``."""
    runs: list[tuple[list[str], str]] = []
    for python in PYTHONS:
        if python not in versions:
            continue
        if runs and runs[-1][1] == versions[python]:
            runs[-1][0].append(python)
        else:
            runs.append(([python], versions[python]))
    if not runs:
        return "(not needed)"
    if len(runs) == 1 and len(runs[0][0]) == len(PYTHONS):
        return runs[0][1]
    spans = (f"{p[0]}–{p[-1]}" if len(p) > 1 else p[0] for p, _ in runs)
    return ", ".join(f"{span} {version}" for span, (_, version) in zip(spans, runs, strict=True))


def matrix(specs: Iterable[str], download: bool, jobs: int) -> dict[str, dict[str, str]]:
    """``{requirement: {target name: cell}}`` for every requirement and target."""
    work: dict[tuple[str, str, str], concurrent.futures.Future[str | None]] = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for spec in specs:
            requirement = Requirement(spec)
            bare = f"{requirement.name}{requirement.specifier}"
            for target in TARGETS:
                for python in PYTHONS:
                    if applies(requirement, target, python):
                        work[spec, target.name, python] = pool.submit(
                            chosen_wheel, bare, target, python, download
                        )
    table: dict[str, dict[str, dict[str, str]]] = {}
    for (spec, target_name, python), future in work.items():
        cells = table.setdefault(spec, {}).setdefault(target_name, {})
        cells[python] = wheel_version(future.result())
    return {
        spec: {t.name: summarize(table.get(spec, {}).get(t.name, {})) for t in TARGETS}
        for spec in table
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--extra",
        action="append",
        help="extra whose dependencies to add to the base ones (default: client)",
    )
    parser.add_argument("--download", action="store_true", help="run pip download itself")
    parser.add_argument("--jobs", type=int, default=6, help="pip processes at once")
    args = parser.parse_args(argv)
    extras = args.extra if args.extra is not None else ["client"]
    specs = requirements(extras)
    rows = matrix(specs, args.download, args.jobs)
    print(
        f"newest wheel pip picks per requirement (base + {', '.join(extras)}), "
        f"CPython {PYTHONS[0]}–{PYTHONS[-1]}; — = no binary wheel\n"
    )
    print("| requirement | " + " | ".join(t.name for t in TARGETS) + " |")
    print("| --- |" + " --- |" * len(TARGETS))
    missing = 0
    for spec, cells in rows.items():
        print(f"| `{spec}` | " + " | ".join(cells[t.name] for t in TARGETS) + " |")
        missing += sum("—" in cells[t.name] for t in TARGETS if not t.name.startswith("macOS x86"))
    print(f"\ncells without a wheel on the supported targets (all but Intel macOS): {missing}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
