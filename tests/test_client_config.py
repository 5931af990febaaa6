"""Settings: defaults ← config file ← flags; bad values give clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fer_tui.__main__ import build_parser, main
from fer_tui.config import ConfigError, Settings, config_path, load_settings


def flags(*argv: str) -> dict:
    values = vars(build_parser().parse_args(argv))
    values.pop("config")
    return values


def test_flags_win_over_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('server = "ws://file:1"\nname = "from-file"\nthreshold = 0.6\ncamera = 2\n')
    merged = load_settings(flags("--name", "from-flag", "--camera", "none"), path)
    assert merged.name == "from-flag"  # flag
    assert merged.server == "ws://file:1"  # file
    assert merged.threshold == 0.6
    assert merged.camera == "none"
    assert merged.room is None  # default


def test_defaults_without_file(tmp_path: Path) -> None:
    assert load_settings({}, tmp_path / "missing.toml") == Settings()


def test_config_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "fer-tui" / "config.toml"


@pytest.mark.parametrize(
    "content",
    [
        'threshold = "high"',
        "threshold = 2.0",
        'colour = "red"',
        "fps = -1",
        "preview = 3",
        "this is not toml",
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, content: str, capsys) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_settings({}, path)
    assert main(["--config", str(path)]) == 2
    assert "fer-tui:" in capsys.readouterr().err


def test_cli_flags_parse() -> None:
    values = flags(
        "--server",
        "ws://h:1",
        "--room",
        "r",
        "--threshold",
        "0.4",
        "--debug-dir",
        "/x",
        "--no-tagging",
        "--no-preview",
    )
    merged = Settings().merged(values)
    assert (merged.server, merged.room, merged.threshold) == ("ws://h:1", "r", 0.4)
    assert merged.debug_dir == "/x" and not merged.tagging and not merged.preview
    assert Settings().merged(flags()).tagging  # unset flags keep defaults


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["threshold", "fps", "name", "preview", "camera"]),
        st.one_of(
            st.floats(allow_nan=True), st.text(max_size=5), st.booleans(), st.integers(-5, 5)
        ),
    )
)
def test_any_values_give_settings_or_config_error(values: dict) -> None:
    try:
        merged = Settings().merged(values)
    except ConfigError:
        return
    assert 0.0 <= merged.threshold <= 1.0
    assert 0 < merged.fps <= 60
    assert isinstance(merged.preview, bool)


def test_chat_settings_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "bell = false\ndesktop-notify = true\npaste_confirm_lines = 6\nmood_minutes = 2.5\n"
    )
    merged = load_settings({}, path)
    assert (merged.bell, merged.desktop_notify) == (False, True)
    assert (merged.paste_confirm_lines, merged.mood_minutes) == (6, 2.5)
    assert Settings().bell and not Settings().desktop_notify  # bell on, notifications opt-in


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('bell = "yes"', "bad value for bell"),
        ("paste_confirm_lines = 1", "paste_confirm_lines must be 2 or more"),
        ("paste_confirm_lines = 2.5", "bad value for paste_confirm_lines"),
        ("mood_minutes = 0", "mood_minutes must be in (0, 1440]"),
        ("mood_minutes = nan", "mood_minutes must be in (0, 1440]"),
    ],
)
def test_bad_chat_settings_are_clear_errors(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings({}, path)


def test_rooms_setting_takes_a_list_or_commas(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('rooms = ["ops", "random"]\n')
    assert load_settings({}, path).rooms == ("ops", "random")
    assert Settings().merged({"rooms": "ops, random,"}).rooms == ("ops", "random")
    with pytest.raises(ConfigError, match="bad value for rooms"):
        Settings().merged({"rooms": [1, 2]})
