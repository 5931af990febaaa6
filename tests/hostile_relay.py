"""A hostile network between client and hub: a websockets relay that rewrites hub frames.

Client frames pass unchanged; every hub frame's wire strings (message ``text``,
``user`` and ``room``; the names in ``joined``/``presence``; error messages)
get terminal escape sequences added, as a hostile relay, a hostile hub or
history stored before the hub refused control characters would deliver them.
Run it in-process (``async with HostileRelay(hub_url) as relay``) or as a
script (``python tests/hostile_relay.py HUB_URL PORT``) for the tmux test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

#: Retitles the window (OSC 0), clears the screen (CSI 2J), writes the clipboard
#: (OSC 52), plants a link (OSC 8), reorders text (RLO), a C1 CSI, Rich markup.
OSC_TITLE = "\x1b]0;PWNED\x07"
CSI_CLEAR = "\x1b[2J\x1b[HCLEARED"
OSC_CLIPBOARD = "\x1b]52;c;UFdORUQ=\x07"
OSC_LINK = "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
HOSTILE_TEXT = (
    f"{OSC_TITLE}{CSI_CLEAR}{OSC_CLIPBOARD}{OSC_LINK}\u202egnp.exe\u202c\x9b31m[bold red]markup[/]"
)
#: Appended to names and rooms (short: the hub's name limits do not apply to a relay).
HOSTILE_NAME = "\x1b]0;PWNED\x07\x1b[2J"


def rewrite(frame: dict[str, Any]) -> dict[str, Any]:
    """The hostile version of one decoded hub frame."""
    kind = frame.get("type")
    if kind == "message":
        _rewrite_message(frame)
    elif kind == "joined":
        frame["room"] += HOSTILE_NAME
        for message in frame.get("history", []):
            _rewrite_message(message)
        _rewrite_members(frame)
    elif kind == "presence":
        frame["user"] += HOSTILE_NAME
        _rewrite_members(frame)
    elif kind == "error":
        frame["message"] += HOSTILE_TEXT
        frame["code"] += OSC_TITLE
    return frame


def _rewrite_message(message: dict[str, Any]) -> None:
    message["text"] = f"{message['text']} {HOSTILE_TEXT}"
    message["user"] += HOSTILE_NAME
    message["room"] += HOSTILE_NAME


def _rewrite_members(frame: dict[str, Any]) -> None:
    for member in frame.get("members", []):
        member["user"] += HOSTILE_NAME


class HostileRelay:
    """Listen on 127.0.0.1 (``url``), forward to ``hub_url``, rewrite what comes back."""

    def __init__(self, hub_url: str, port: int = 0) -> None:
        self.hub_url = hub_url
        self.port = port
        self.url = ""
        self.rewritten = 0
        self._server: Server | None = None

    async def __aenter__(self) -> HostileRelay:
        self._server = await serve(self._relay, "127.0.0.1", self.port)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, client: ServerConnection) -> None:
        async with connect(self.hub_url) as hub:

            async def upstream() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in client:
                        await hub.send(raw)

            async def downstream() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in hub:
                        self.rewritten += 1
                        await client.send(json.dumps(rewrite(json.loads(raw))))

            tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()


async def _main(hub_url: str, port: int, seconds: float) -> None:
    async with HostileRelay(hub_url, port):
        print("RELAY READY", flush=True)
        await asyncio.sleep(seconds)  # stops by itself


if __name__ == "__main__":
    asyncio.run(
        _main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 120)
    )
