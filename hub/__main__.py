"""``fer-hub``: run the hub daemon.

    fer-hub --host 127.0.0.1 --port 8765 [--history-db hub.sqlite3 | --redis URL] [--token SECRET]
            [--certfile cert.pem --keyfile key.pem] [--rate 5 --burst 20 ...]

SIGINT and SIGTERM close every connection with 1001 and flush SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import protocol
from .protocol import Limits
from .server import (
    MAX_BACKLOG_BYTES,
    MAX_CONNECTIONS,
    PING_INTERVAL,
    PING_TIMEOUT,
    HubConfig,
    serve_hub,
)
from .storage import HISTORY_KEEP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-hub",
        description="FER-TMS hub: broadcasts chat messages to everyone in a room.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on")
    net.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    net.add_argument("--token", default=None, help="secret every join must carry")
    net.add_argument("--certfile", type=Path, default=None, help="TLS certificate: serve wss://")
    net.add_argument("--keyfile", type=Path, default=None, help="TLS private key")
    net.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: auto takes uvloop where it is installed (less CPU per delivery)",
    )
    shared = parser.add_argument_group("several hubs (scaling out)")
    shared.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share rooms, history and presence with every hub on this Redis"
        " (redis://HOST:6379/0); needs the redis extra",
    )
    shared.add_argument(
        "--redis-heartbeat",
        type=float,
        default=1.0,
        help="seconds between heartbeats; a hub silent for 5 leaves presence",
    )
    shared.add_argument("--hub-id", default=None, help="this hub's name in Redis (random)")
    store = parser.add_argument_group("history")
    store.add_argument(
        "--history-db", type=Path, default=None, help="SQLite file for history and seq"
    )
    store.add_argument(
        "--history-size",
        type=int,
        default=protocol.HISTORY_SIZE,
        help="messages per room sent to a joining client",
    )
    store.add_argument(
        "--history-keep",
        type=int,
        default=HISTORY_KEEP,
        help="messages per room kept (in memory, --history-db or --redis; at least"
        " --history-size) for resume and history paging; older ones"
        " are pruned in batches and can no longer be resumed from or deduplicated",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-frame-bytes", type=int, default=protocol.MAX_FRAME_BYTES)
    limits.add_argument("--max-text-chars", type=int, default=protocol.MAX_TEXT_CHARS)
    limits.add_argument("--max-room-chars", type=int, default=protocol.MAX_ROOM_CHARS)
    limits.add_argument("--max-user-chars", type=int, default=protocol.MAX_USER_CHARS)
    limits.add_argument("--max-id-chars", type=int, default=protocol.MAX_ID_CHARS)
    limits.add_argument(
        "--rate", type=float, default=protocol.RATE_PER_SECOND, help="frames/s per connection"
    )
    limits.add_argument(
        "--burst", type=int, default=protocol.RATE_BURST, help="frames at once per connection"
    )
    limits.add_argument(
        "--max-strikes",
        type=int,
        default=protocol.MAX_STRIKES,
        help="refused frames in a row before closing with 1008",
    )
    limits.add_argument(
        "--join-timeout",
        type=float,
        default=protocol.JOIN_TIMEOUT,
        help="seconds a new connection has to join",
    )
    limits.add_argument(
        "--max-rooms", type=int, default=protocol.MAX_ROOMS, help="rooms one hub holds"
    )
    limits.add_argument(
        "--max-backlog-bytes",
        type=int,
        default=MAX_BACKLOG_BYTES,
        help="unread bytes after which a slow client is closed",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="open connections; more are refused with HTTP 503",
    )
    limits.add_argument("--ping-interval", type=float, default=PING_INTERVAL, help="0 disables")
    limits.add_argument(
        "--ping-timeout",
        type=float,
        default=PING_TIMEOUT,
        help="close a client with no pong and no progress for this long",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> HubConfig:
    limits = Limits(
        max_frame_bytes=args.max_frame_bytes,
        max_text_chars=args.max_text_chars,
        max_room_chars=args.max_room_chars,
        max_user_chars=args.max_user_chars,
        max_id_chars=args.max_id_chars,
        history_size=args.history_size,
        rate_per_second=args.rate,
        rate_burst=args.burst,
        max_strikes=args.max_strikes,
        max_rooms=args.max_rooms,
        join_timeout=args.join_timeout,
    )
    return HubConfig(
        host=args.host,
        port=args.port,
        limits=limits,
        token=args.token,
        history_db=args.history_db,
        history_keep=args.history_keep,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_backlog_bytes=args.max_backlog_bytes,
        max_connections=args.max_connections,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout,
        redis_url=args.redis,
        redis_heartbeat=args.redis_heartbeat,
        hub_id=args.hub_id,
    )


async def run(config: HubConfig) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s))
    async with serve_hub(config) as running:
        # One parseable line for scripts and tests that start the hub on port 0.
        print(f"fer-hub listening on {running.url}", flush=True)
        received = await stop
        logging.getLogger("hub").info("%s: shutting down", signal.Signals(received).name)


def run_loop(main_task: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main_task`` on uvloop (``auto``: when installed) or on asyncio's own loop."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise SystemExit("fer-hub: --loop uvloop, but uvloop is not installed") from None
        else:
            uvloop.run(main_task)
            return
    asyncio.run(main_task)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.keyfile is not None and args.certfile is None:
        build_parser().error("--keyfile needs --certfile")
    if args.history_keep < 1 or args.history_size < 1:
        build_parser().error("--history-keep and --history-size must be at least 1")
    if args.redis is not None and args.history_db is not None:
        build_parser().error("--history-db and --redis exclude each other: Redis keeps history")
    if args.redis_heartbeat <= 0:
        build_parser().error("--redis-heartbeat must be positive")
    try:
        run_loop(run(config_from_args(args)), args.loop)
    except (OSError, RuntimeError) as exc:
        logging.getLogger("hub").error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
