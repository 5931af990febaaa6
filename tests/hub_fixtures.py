"""Helpers for the hub tests: a real hub on 127.0.0.1 and real websockets peers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub import protocol
from hub.server import HubConfig, RunningHub, serve_hub

REPO = Path(__file__).resolve().parents[1]

#: Upper bound for any single wait in these tests, in seconds.
WAIT = 5.0


def config(**overrides: Any) -> HubConfig:
    """A HubConfig on an ephemeral port; ``limits`` may be a dict of overrides."""
    limits = overrides.pop("limits", {})
    if isinstance(limits, dict):
        limits = dataclasses.replace(protocol.DEFAULT_LIMITS, **limits)
    return HubConfig(host="127.0.0.1", port=0, limits=limits, **overrides)


@contextlib.asynccontextmanager
async def hub(**overrides: Any) -> AsyncIterator[RunningHub]:
    async with serve_hub(config(**overrides)) as running:
        yield running


class Peer:
    """A websockets client speaking the protocol, with bounded waits."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, **kwargs: Any) -> AsyncIterator[Peer]:
        async with connect(url, open_timeout=WAIT, close_timeout=1, **kwargs) as ws:
            yield cls(ws)

    async def send(self, frame: str | bytes | dict[str, Any]) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.send(frame)

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return json.loads(raw)

    async def recv_type(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """Skip frames until one of ``kind`` arrives (presence frames are noise here)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] == kind:
                    return frame

    async def join(
        self,
        room: str,
        user: str,
        since: int | None = None,
        token: str | None = None,
        session: str | None = None,
    ) -> dict[str, Any]:
        await self.send(protocol.join_frame(room, user, since, token, session))
        frame = await self.recv()
        assert frame["type"] == "joined", frame
        return frame

    async def say(
        self, id: str, text: str = "hello", emotion: protocol.Emotion | None = None
    ) -> None:
        await self.send(protocol.message_frame(id, text, emotion))

    async def expect_error(self, code: str) -> dict[str, Any]:
        frame = await self.recv_type("error")
        assert frame["code"] == code, frame
        return frame

    async def expect_close(self, timeout: float = WAIT) -> tuple[int | None, str | None]:
        """Read until the hub closes; return its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, self.ws.close_reason

    async def drain(self, quiet: float = 0.3) -> list[dict[str, Any]]:
        """Return every frame that arrives until none has for ``quiet`` seconds."""
        frames = []
        while True:
            try:
                frames.append(json.loads(await asyncio.wait_for(self.ws.recv(), quiet)))
            except TimeoutError:
                return frames

    async def silent(self, seconds: float = 0.3) -> bool:
        """Return True if nothing arrives for ``seconds``."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {frame}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: What each hub process of :func:`start_hub_process` wrote, by pid, and its copiers.
_OUTPUT: dict[int, tuple[list[str], list[threading.Thread]]] = {}


def start_hub_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m hub --port 0 ...``; return the process and its URL.

    What the hub writes after its first line is copied to this process's
    stderr as it comes (pytest shows it with a failing test): a pipe nobody
    reads would stop the hub at its next log line once 64 KB had piled up.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # "fer-hub listening on ws://..."; bounded by test timeout
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"hub did not start: {line!r} {proc.stderr.read()}")
    lines: list[str] = []
    copiers = [
        threading.Thread(target=_copy_lines, args=(stream, proc.pid, lines), daemon=True)
        for stream in (proc.stdout, proc.stderr)
    ]
    for copier in copiers:
        copier.start()
    _OUTPUT[proc.pid] = (lines, copiers)
    return proc, line.rsplit(" ", 1)[1].strip()


def hub_output(proc: subprocess.Popen[str]) -> str:
    """What a hub from :func:`start_hub_process` wrote after its first line; call once it ended."""
    lines, copiers = _OUTPUT[proc.pid]
    for copier in copiers:
        copier.join(10)
    return "".join(lines)


def _copy_lines(stream: Any, pid: int, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        sys.stderr.write(f"[hub {pid}] {line}")
