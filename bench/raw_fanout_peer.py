"""The floor for the paced benchmark: a bare asyncio WebSocket fan-out, no checks.

Run by ``bench/hub_bench.py`` as ``python bench/raw_fanout_peer.py PORT``.
It answers the hub's ``join`` with ``{"type":"joined"}`` and writes every
message to every connection: no validation, history, limits or keepalive, a
single write per delivery. What latency it gets under the same load is what
this machine and the load generator allow; the hub's cost is the difference.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
members: set[FanOut] = set()


def text_frame(payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload


class FanOut(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()
        self.open = False

    def connection_lost(self, exc: Exception | None) -> None:
        members.discard(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            key = next(
                line.split(b":", 1)[1].strip()
                for line in bytes(buffer[:end]).split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            del buffer[: end + 4]
            self.open = True
        while len(buffer) >= 6:  # client frames: masked, short
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            if len(buffer) < start + 4 + length:
                return
            mask = buffer[start : start + 4]
            body = bytes(
                b ^ mask[i % 4] for i, b in enumerate(buffer[start + 4 : start + 4 + length])
            )
            del buffer[: start + 4 + length]
            self.on_text(body)

    def on_text(self, body: bytes) -> None:
        frame = json.loads(body)
        if frame.get("type") == "join":
            members.add(self)
            self.transport.write(text_frame(b'{"type":"joined"}'))
        elif frame.get("type") == "message":
            out = text_frame(
                json.dumps({"type": "message", "id": frame["id"]}, separators=(",", ":")).encode()
            )
            for member in members:
                member.transport.write(out)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FanOut, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
