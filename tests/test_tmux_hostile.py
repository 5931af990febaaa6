"""A real terminal under attack: hostile hub frames cannot retitle, clear or write the clipboard.

A hub, the rewriting relay (tests/hostile_relay.py) and two ``fer-tui``
processes run in tmux. alice talks to the hub directly; bob goes through the
relay, so every string bob's client receives (alice's text and name, the room,
the member list) carries OSC 0, CSI 2J + CSI H, OSC 52 and OSC 8. That is how
history stored before the hub refused control characters, or a hostile
network or hub, would arrive. tmux obeys all of these when they reach it (a
control window proves it), so an unchanged ``#{pane_title}``, an uncleared
screen and no paste buffer mean that nothing reached bob's terminal.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest
from client_fixtures import REPO, free_port, model_path
from test_tmux_chat import Tmux, tmux  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(120)


def pane_title(tmux: Tmux, window: str) -> str:  # noqa: F811
    return tmux.run("display-message", "-p", "-t", f"fer:{window}", "#{pane_title}").strip()


def wait_title(tmux: Tmux, window: str, wanted: str) -> str:  # noqa: F811
    deadline = time.monotonic() + 10
    while (title := pane_title(tmux, window)) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return title


def test_hostile_frames_do_not_reach_the_terminal(
    tmux: Tmux,  # noqa: F811
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = model_path(tmp_path_factory)
    hub_port, relay_port = free_port(), free_port()
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "xterm-256color"}
    python = sys.executable
    tmux.start("hub", f"{python} -m hub --host 127.0.0.1 --port {hub_port}", env)
    relay = REPO / "tests" / "hostile_relay.py"
    hub_url = f"ws://127.0.0.1:{hub_port}"
    tmux.start("relay", f"{python} {relay} {hub_url} {relay_port} 110", env)
    tmux.run("set-option", "-g", "set-clipboard", "on")  # OSC 52 would make a paste buffer

    # Control: the same bytes printed raw do retitle a tmux pane.
    tmux.start("control", "printf '\\033]0;PWNED\\007'; sleep 60", env)
    assert wait_title(tmux, "control", "PWNED") == "PWNED", "tmux ignored OSC 0: test is blind"

    client = f"{python} -m fer_tui --room tmux --model {shlex.quote(str(model))} --camera none"
    tmux.wait_for("relay", lambda s: "RELAY READY" in s, "the relay")
    tmux.start("alice", f"{client} --server {hub_url} --name alice", env)
    tmux.start("bob", f"{client} --server ws://127.0.0.1:{relay_port} --name bob", env)
    tmux.wait_for("alice", lambda s: "● online" in s and "bob" in s, "alice online, bob listed")
    bob_before = tmux.wait_for("bob", lambda s: "● online" in s and "alice" in s, "bob online")
    assert "^[]0;PWNED^G" in bob_before  # names in bob's member list are already hostile
    title_before = pane_title(tmux, "bob")

    tmux.run("send-keys", "-t", "fer:alice", "hello through the relay", "Enter")
    screen = tmux.wait_for(
        "bob", lambda s: "hello through the relay" in s, "alice's message on bob's screen"
    )
    time.sleep(1.0)  # let any escape sequence that did get through take effect
    screen = tmux.screen("bob")

    assert pane_title(tmux, "bob") == title_before
    assert "PWNED" not in pane_title(tmux, "bob")
    # Not cleared: the layout and the older lines are all still there...
    assert "Members" in screen and "● online" in screen and "joined tmux" in screen
    assert "hello through the relay" in screen
    # ...and "CLEARED" appears only inside the visible, inert sequence.
    assert screen.count("CLEARED") == screen.count("^[[HCLEARED") >= 1
    assert "^[]0;PWNED^G" in screen  # the line is still shown, its controls visible
    assert tmux.run("list-buffers") == ""  # OSC 52 never reached tmux's clipboard

    tmux.run("send-keys", "-t", "fer:bob", "C-q")
    tmux.run("send-keys", "-t", "fer:alice", "C-q")
