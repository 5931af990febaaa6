"""The real terminal: a hub and two ``fer-tui`` processes in tmux.

One client gets keystrokes with ``send-keys``; the other's screen is read with
``capture-pane``. The typing client's camera is a folder made from the real
photos in ``../shared/data/faces``. Skips cleanly without tmux or the photos.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fixtures import FACES_DIR, REPO, free_port, model_path

from fer_tui.emotions import EMOJI

pytestmark = [pytest.mark.timeout(120), pytest.mark.realdata]

WAIT = 30.0


class Tmux:
    """A private tmux server (its own socket), killed at the end."""

    def __init__(self, socket_name: str) -> None:
        self.socket = socket_name

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def start(self, window: str, command: str, env: dict[str, str]) -> None:
        """Run ``command`` in a new 150×36 window (the session is made on first use)."""
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        # -u: a size inherited from pytest's environment would pin Textual to 80×24.
        shell = f"cd {REPO} && env -u COLUMNS -u LINES {exports} {command}; sleep 30"
        if self.run("ls"):
            self.run("new-window", "-d", "-t", "fer", "-n", window, shell)
        else:
            self.run("new-session", "-d", "-s", "fer", "-x", "150", "-y", "36", "-n", window, shell)
            self.run("set-option", "-g", "default-size", "150x36")  # for the later windows

    def screen(self, window: str) -> str:
        return self.run("capture-pane", "-p", "-t", f"fer:{window}")

    def wait_for(self, window: str, predicate, what: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            text = self.screen(window)
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what} in {window}:\n{text}")
            time.sleep(0.2)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = Tmux(f"fer-test-{os.getpid()}")
    try:
        yield server
    finally:
        server.run("kill-server")


@pytest.fixture
def camera_folder(tmp_path: Path) -> Path:
    if not (FACES_DIR / "README.md").is_file():
        pytest.skip(f"real face photos not found at {FACES_DIR}")
    folder = tmp_path / "camera"
    folder.mkdir()
    for name in ("neutral_woman.jpg", "obama_320x240.jpg"):
        shutil.copy(FACES_DIR / name, folder / name)
    return folder


def test_two_clients_chat_in_real_terminals(
    tmux: Tmux, camera_folder: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = model_path(tmp_path_factory)
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "xterm-256color"}
    python = sys.executable
    tmux.start("hub", f"{python} -m hub --host 127.0.0.1 --port {port}", env)
    client = f"{python} -m fer_tui --server {url} --room tmux --model {model} --threshold 0"
    tmux.start("alice", f"{client} --name alice --camera {camera_folder}", env)
    tmux.start("bob", f"{client} --name bob --camera none", env)

    tmux.wait_for("alice", lambda s: "● online" in s and "bob" in s, "alice online, bob listed")
    tmux.wait_for("bob", lambda s: "● online" in s, "bob online")
    tmux.wait_for("alice", lambda s: "%" in s.split("╍")[-1], "alice's face preview label")

    tmux.run("send-keys", "-t", "fer:alice", "hello from a real terminal", "Enter")
    bob_screen = tmux.wait_for(
        "bob", lambda s: "hello from a real terminal" in s, "the message on bob's screen"
    )
    line = next(ln for ln in bob_screen.splitlines() if "hello from a real terminal" in ln)
    assert "alice" in line
    assert any(emoji in line for emoji in EMOJI.values()), line  # tagged with an expression
    alice_screen = tmux.wait_for(
        "alice",
        lambda s: "hello from a real terminal" in s and "pending" not in s,
        "alice's own message acknowledged",
    )
    assert "hello from a real terminal" in alice_screen

    tmux.run("send-keys", "-t", "fer:bob", "hi alice", "Enter")
    line = next(
        ln
        for ln in tmux.wait_for("alice", lambda s: "hi alice" in s, "bob's reply").splitlines()
        if "hi alice" in ln
    )
    assert "untagged" in line  # bob has no camera
    tmux.run("send-keys", "-t", "fer:alice", "C-q")
    tmux.wait_for("bob", lambda s: "alice left" in s, "alice leaving")
