"""``fer-tui``: command line of the terminal chat client.

Flags win over the config file (see :mod:`fer_tui.config`), which wins over
defaults. Without ``--server`` an embedded hub is started on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fer_tui import __version__


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
    parser.add_argument("--token", help="hub access token, if the hub needs one")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, merge the config file, run the app."""
    from pathlib import Path

    from fer_tui.config import ConfigError, load_settings

    args = vars(build_parser().parse_args(argv))
    config = args.pop("config")
    try:
        settings = load_settings(args, Path(config) if config else None)
    except ConfigError as exc:
        print(f"fer-tui: {exc}", file=sys.stderr)
        return 2

    from fer_tui.app import FerApp

    FerApp(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
