"""Client settings: defaults, then the TOML config file, then the environment, then flags.

The file lives at ``$XDG_CONFIG_HOME/fer-tui/config.toml`` (``~/.config/...``
by default; ``%APPDATA%\\fer-tui`` on Windows) and may hold any of the
:class:`Settings` fields, e.g.::

    server = "ws://chat.example:8765"
    name = "ada"
    camera = "0"
    threshold = 0.4
    token = "eyJhbGciOi..."   # from the hub's operator (fer-hub token); keep the file private

The one environment variable is ``FER_TUI_TOKEN`` (the hub token): it beats
the file and loses to ``--token``, so a token need not sit in the file or in
the shell history. Reading settings never writes anything.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: Default minimum smoothed confidence for a message to be tagged.
DEFAULT_THRESHOLD = 0.35
#: Environment variables and the settings they give (below flags, above the file).
ENVIRONMENT = {"FER_TUI_TOKEN": "token"}


class ConfigError(ValueError):
    """The config file is unreadable or holds a bad value."""


@dataclass(frozen=True)
class Settings:
    """Everything the client needs to start. ``None`` server: run an embedded hub."""

    server: str | None = None
    room: str | None = None
    name: str | None = None
    camera: str = "0"
    model: str | None = None
    debug_dir: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    token: str | None = None
    fps: float = 4.0
    preview: bool = True
    tagging: bool = True
    scrollback: int = 100_000  # rows each log keeps (messages, notices, date lines)
    #: Ring the terminal bell when a message mentions you or a direct message arrives.
    bell: bool = True
    #: Also raise a desktop notification (OSC 9/777) where the terminal supports one.
    desktop_notify: bool = False
    #: A paste of this many lines or more asks before sending them.
    paste_confirm_lines: int = 3
    #: Minutes of tags the room's mood summary covers.
    mood_minutes: float = 10.0
    #: More rooms to join at start, after ``room`` (a list, or names split by commas).
    rooms: tuple[str, ...] = ()

    def merged(self, values: dict[str, Any]) -> Settings:
        """Return a copy with ``values`` (``None`` values ignored) applied and checked."""
        known = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for key, value in values.items():
            key = key.replace("-", "_")
            if value is None:
                continue
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}")
            changes[key] = _coerce(key, value, getattr(self, key))
        result = dataclasses.replace(self, **changes)
        if not 0.0 <= result.threshold <= 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {result.threshold}")
        if not 0.0 < result.fps <= 60.0:  # also refuses NaN
            raise ConfigError(f"fps must be in (0, 60], got {result.fps}")
        if result.scrollback < 1:
            raise ConfigError(f"scrollback must be at least 1, got {result.scrollback}")
        if result.paste_confirm_lines < 2:
            raise ConfigError(
                f"paste_confirm_lines must be 2 or more, got {result.paste_confirm_lines}"
            )
        if not 0.0 < result.mood_minutes <= 24 * 60:
            raise ConfigError(f"mood_minutes must be in (0, 1440], got {result.mood_minutes}")
        return result


def _coerce(key: str, value: Any, current: Any) -> Any:
    try:
        if isinstance(current, tuple):
            names = value.split(",") if isinstance(value, str) else value
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise TypeError
            return tuple(name.strip() for name in names if name.strip())
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(current, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if isinstance(current, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for {key}: {value!r}") from None


def config_path() -> Path:
    """Where the config file is looked for."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "fer-tui" / "config.toml"


def load_settings(
    flags: dict[str, Any],
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults ← config file (if any) ← environment ← ``flags`` (``None`` means unset).

    ``environ`` defaults to :data:`os.environ`; an empty variable counts as unset.
    """
    environ = os.environ if environ is None else environ
    env_values = {key: environ.get(var) or None for var, key in ENVIRONMENT.items()}
    path = config_path() if path is None else path
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    return Settings().merged(file_values).merged(env_values).merged(flags)
