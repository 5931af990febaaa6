"""``fer-tui``: command line of the terminal chat client.

Flags win over the environment (``FER_TUI_TOKEN``), which wins over the
config file (see :mod:`fer_tui.config`), which wins over defaults. Without
``--server`` an embedded hub is started on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fer_tui import __version__

#: Top-level modules of the ``client`` extra's packages: without one, fer-tui cannot run.
CLIENT_STACK = frozenset({"textual", "cv2", "numpy", "tomli"})
#: What to print when part of the client stack is missing (e.g. ``pip install fer-tms``).
INSTALL_HINT = "pip install 'fer-tms[client]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-tui",
        description="Terminal chat in which every message carries your facial expression, "
        "classified on this machine. No image ever leaves it.",
    )
    parser.add_argument(
        "--server", help="hub URL, e.g. ws://host:8765 (default: start a local hub on 127.0.0.1)"
    )
    parser.add_argument("--room", help="room to join (asked on the first screen if missing)")
    parser.add_argument("--name", help="your name in the room (asked if missing)")
    parser.add_argument(
        "--camera",
        metavar="SOURCE",
        help="device index (default 0), video file (looped), folder of images (cycled), or 'none'",
    )
    parser.add_argument("--model", metavar="PATH", help="another .tflite emotion model")
    parser.add_argument(
        "--threshold", type=float, help="minimum confidence for a message to be tagged (0-1)"
    )
    parser.add_argument("--fps", type=float, help="face analyses per second (default 4)")
    parser.add_argument(
        "--token",
        help="hub access token, if the hub needs one: the signed token its operator gave you"
        " (fer-hub token) or its shared secret; also FER_TUI_TOKEN or token in the config"
        " file (this flag wins, then the variable, then the file)",
    )
    parser.add_argument(
        "--scrollback", type=int, metavar="N", help="rows each log keeps (default 100000)"
    )
    parser.add_argument(
        "--debug-dir",
        metavar="DIR",
        help="save each message's annotated frame and 48x48 crop here "
        "(off by default: nothing is written to disk)",
    )
    parser.add_argument(
        "--no-tagging",
        dest="tagging",
        action="store_false",
        default=None,
        help="start with tagging off",
    )
    parser.add_argument(
        "--no-preview",
        dest="preview",
        action="store_false",
        default=None,
        help="start with the face preview hidden",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file to read instead of the default one"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _missing_client_module() -> str | None:
    """The first module of the client stack that cannot be found, or None.

    Checked up front because the app imports OpenCV and NumPy only once the
    camera starts, by which time the terminal belongs to Textual.
    """
    import importlib.util

    needed = sorted(CLIENT_STACK - ({"tomli"} if sys.version_info >= (3, 11) else set()))
    for name in needed:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, merge the config file, run the app."""
    from pathlib import Path

    args = vars(build_parser().parse_args(argv))
    missing = _missing_client_module()
    if missing is not None:
        print(
            f"fer-tui: {missing} is not installed; the client needs: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 1
    try:
        from fer_tui.app import FerApp
        from fer_tui.config import ConfigError, load_settings
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLIENT_STACK:
            raise  # a bug of ours, not a missing extra: keep the traceback
        print(
            f"fer-tui: {missing} is not installed; the client needs: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 1
    config = args.pop("config")
    try:
        settings = load_settings(args, Path(config) if config else None)
    except ConfigError as exc:
        print(f"fer-tui: {exc}", file=sys.stderr)
        return 2

    FerApp(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
