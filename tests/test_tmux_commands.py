"""Slash commands in real terminals: a hub and two ``fer-tui`` processes in tmux.

alice types (``send-keys``); bob's screen is read (``capture-pane``) and bob
answers. Covers ``/join``, ``/me``, ``/nick`` and a direct message that only
its recipient sees. No camera: the commands are the subject here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from client_fixtures import free_port, model_path
from test_tmux_chat import Tmux, tmux  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.timeout(150)]


def start_chat(tmux: Tmux, tmp_path: Path, model: Path, names: list[str]) -> None:  # noqa: F811
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "xterm-256color"}
    tmux.start("hub", f"{sys.executable} -m hub --host 127.0.0.1 --port {port}", env)
    client = f"{sys.executable} -m fer_tui --server {url} --room lobby --model {model}"
    for name in names:
        tmux.start(name, f"{client} --name {name} --camera none", env)
    for name in names:
        tmux.wait_for(name, lambda s: "● online" in s, f"{name} online")


def type_keys(tmux: Tmux, window: str, text: str) -> None:  # noqa: F811
    tmux.run("send-keys", "-t", f"fer:{window}", "-l", text)
    tmux.run("send-keys", "-t", f"fer:{window}", "Enter")


def test_join_me_nick_and_direct_message(
    tmux: Tmux,  # noqa: F811
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = model_path(tmp_path_factory)
    start_chat(tmux, tmp_path, model, ["alice", "bob", "carol"])
    tmux.wait_for("alice", lambda s: "carol" in s and "bob" in s, "everyone listed")

    type_keys(tmux, "alice", "/me waves hello")
    screen = tmux.wait_for("bob", lambda s: "waves hello" in s, "the action on bob's screen")
    line = next(ln for ln in screen.splitlines() if "waves hello" in ln)
    assert "alice waves hello" in line and "/me" not in line

    type_keys(tmux, "alice", "/msg bob only for you")
    screen = tmux.wait_for("bob", lambda s: "@alice" in s, "a buffer for alice on bob's side")
    tmux.run("send-keys", "-t", "fer:bob", "M-2")  # bob opens the conversation
    tmux.wait_for("bob", lambda s: "only for you" in s, "the direct message")
    type_keys(tmux, "bob", "got it")
    tmux.wait_for("alice", lambda s: "got it" in s, "bob's reply in alice's buffer")
    carol = tmux.screen("carol")
    assert "only for you" not in carol and "got it" not in carol

    type_keys(tmux, "alice", "/join r2")
    tmux.wait_for("alice", lambda s: "joined r2 as alice" in s, "alice in r2")
    type_keys(tmux, "carol", "/join r2")
    tmux.wait_for("carol", lambda s: "joined r2 as carol" in s, "carol in r2")
    type_keys(tmux, "alice", "hello r2")
    tmux.wait_for("carol", lambda s: "hello r2" in s, "the message in r2")
    assert "hello r2" not in tmux.screen("bob")  # bob is not in r2

    type_keys(tmux, "alice", "/nick ada")
    tmux.wait_for("carol", lambda s: "alice is now known as ada" in s, "the rename in r2")
    tmux.run("send-keys", "-t", "fer:bob", "M-1")
    tmux.wait_for("bob", lambda s: "alice is now known as ada" in s, "the rename in lobby")
