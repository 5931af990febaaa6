"""``python -m hub`` as a real process: signals, restart with --history-db, flags."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hub_fixtures import REPO, WAIT, Peer, start_hub_process

from hub import protocol

pytestmark = pytest.mark.timeout(90)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_sigterm_closes_with_1001_and_restart_keeps_history(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    proc, url = start_hub_process("--history-db", str(db), "--burst", "100")
    try:
        async with Peer.open(url) as ana:
            await ana.join("r", "ana", session="s")
            acked = []
            for i in range(30):
                await ana.say(f"m{i}", f"text {i}", protocol.Emotion("neutral", 0.5))
                acked.append(await ana.recv_type("message"))
            # Wait in a thread: the client must keep answering the close handshake.
            assert await asyncio.to_thread(stop, proc) == 0
            assert (await ana.expect_close())[0] == 1001
    finally:
        if proc.poll() is None:
            proc.kill()

    proc, url = start_hub_process("--history-db", str(db))
    try:
        async with Peer.open(url) as back:
            joined = await back.join("r", "ana", since=25, session="s")
            assert joined["history"] == acked[25:]
            assert joined["seq"] == 30
            await back.say("m0", "a resend from before the restart")
            assert await back.recv_type("message") == acked[0]
            await back.say("new", "after restart")
            assert (await back.recv_type("message"))["seq"] == 31
        assert await asyncio.to_thread(stop, proc, signal.SIGINT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_killed_hub_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    proc, url = start_hub_process("--history-db", str(db), "--rate", "1000", "--burst", "1000")
    acked: list[dict] = []
    try:
        async with Peer.open(url) as ana:
            await ana.join("r", "ana")

            async def send_all() -> None:
                for i in range(1000):
                    await ana.say(f"m{i}", f"text {i}")
                    await asyncio.sleep(0)

            async def read_acks() -> None:
                while True:
                    acked.append(await ana.recv_type("message"))

            sender = asyncio.create_task(send_all())
            reader = asyncio.create_task(read_acks())
            while len(acked) < 100:
                await asyncio.sleep(0.01)
            proc.kill()  # no chance to flush anything
            proc.wait(timeout=WAIT)
            await asyncio.gather(sender, reader, return_exceptions=True)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 100

    proc, url = start_hub_process("--history-db", str(db), "--history-size", "1000")
    try:
        async with Peer.open(url) as back:
            joined = await back.join("r", "late")
            kept = {m["seq"]: m for m in joined["history"]}
            for message in acked:
                assert kept[message["seq"]] == message
            assert joined["seq"] >= acked[-1]["seq"]
    finally:
        stop(proc)


def test_help_lists_every_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hub", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=True,
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--history-db",
        "--history-size",
        "--history-keep",
        "--token",
        "--certfile",
        "--keyfile",
        "--log-level",
        "--max-frame-bytes",
        "--max-text-chars",
        "--rate",
        "--burst",
        "--max-strikes",
        "--max-rooms",
        "--max-connections",
        "--join-timeout",
        "--max-backlog-bytes",
        "--ping-timeout",
    ):
        assert flag in out


def test_port_in_use_fails_cleanly() -> None:
    proc, url = start_hub_process()
    try:
        port = url.rsplit(":", 1)[1]
        second = subprocess.run(
            [sys.executable, "-m", "hub", "--port", port],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
        )
        assert second.returncode == 1
        assert "address already in use" in second.stderr.lower()
    finally:
        stop(proc)
