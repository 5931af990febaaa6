"""``fer-hub``: run the hub daemon, or mint a member's token.

    fer-hub --host 127.0.0.1 --port 8765 [--history-db hub.sqlite3 | --redis URL]
            [--jwt-secret-file hub.secret | --jwt-public-key hub.pub | --token SECRET]
            [--certfile cert.pem --keyfile key.pem] [--rate 5 --burst 20 ...]
    fer-hub token --sub ada [--rooms lobby dev] --ttl 7d --jwt-secret-file hub.secret

SIGINT and SIGTERM close every connection with 1001 and flush SQLite.
``token`` is recognised as the first argument only, so ``fer-hub --port ...``
serves as before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from . import protocol
from .auth import DEFAULT_LEEWAY, JwtKey, KeyFileError, mint_token, parse_duration
from .protocol import Limits
from .server import (
    IP_LIMIT_EXEMPT,
    MAX_BACKLOG_BYTES,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_HANDSHAKES_PER_IP,
    PING_INTERVAL,
    PING_TIMEOUT,
    HubConfig,
    serve_hub,
)
from .storage import HISTORY_KEEP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-hub",
        description="FER-TMS hub: broadcasts chat messages to everyone in a room."
        " Serves GET /healthz and GET /metrics (Prometheus) on the same port.",
        epilog="fer-hub token --help: mint a signed token for one member.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on")
    net.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    net.add_argument("--certfile", type=Path, default=None, help="TLS certificate: serve wss://")
    net.add_argument("--keyfile", type=Path, default=None, help="TLS private key")
    auth = parser.add_argument_group(
        "who may join (docs/security.md); without these flags anyone may take any free name"
    )
    keys = auth.add_mutually_exclusive_group()
    keys.add_argument(
        "--jwt-secret-file",
        type=Path,
        metavar="PATH",
        default=None,
        help="every join carries a JWT signed HS256 with the secret in PATH (32+ bytes); its"
        " sub is the only name it may use, its rooms claim (if any) the rooms it may join",
    )
    keys.add_argument(
        "--jwt-public-key",
        type=Path,
        metavar="PATH",
        default=None,
        help="like --jwt-secret-file, for tokens signed RS256 (RSA) or ES256 (P-256) by the"
        " private key whose PEM public key is in PATH; needs the cryptography package",
    )
    keys.add_argument(
        "--token",
        default=None,
        help="weaker: one shared secret every join must carry; whoever has it may take any"
        " free name",
    )
    auth.add_argument(
        "--jwt-leeway",
        type=float,
        default=DEFAULT_LEEWAY,
        metavar="SECONDS",
        help="clock difference tolerated when checking a token's exp, nbf and iat",
    )
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
        " (redis://HOST:6379/0) or Redis Cluster (one node's URL, or a seed list:"
        " redis://HOST:7000,HOST:7001); needs the redis extra",
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
    limits.add_argument(
        "--max-frame-bytes",
        type=int,
        default=protocol.MAX_FRAME_BYTES,
        help="largest client frame; larger ones are refused (frame_too_big, close 1009)",
    )
    limits.add_argument(
        "--max-text-chars",
        type=int,
        default=protocol.MAX_TEXT_CHARS,
        help="longest chat text (text_too_long)",
    )
    limits.add_argument(
        "--max-room-chars",
        type=int,
        default=protocol.MAX_ROOM_CHARS,
        help="longest room name (bad_field)",
    )
    limits.add_argument(
        "--max-user-chars",
        type=int,
        default=protocol.MAX_USER_CHARS,
        help="longest user name (bad_field)",
    )
    limits.add_argument(
        "--max-id-chars",
        type=int,
        default=protocol.MAX_ID_CHARS,
        help="longest client-chosen message id (bad_field)",
    )
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
    limits.add_argument(
        "--max-handshakes-per-ip",
        type=int,
        default=MAX_HANDSHAKES_PER_IP,
        metavar="N",
        help="connection attempts one address (IPv6: one /64) may make per minute, in bursts"
        " of up to N; more are refused with HTTP 429 and Retry-After. 0: unlimited",
    )
    limits.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=MAX_CONNECTIONS_PER_IP,
        metavar="N",
        help="connections one address (IPv6: one /64) may hold open; more are refused with"
        " HTTP 503. 0: unlimited",
    )
    limits.add_argument(
        "--ip-limit-exempt",
        nargs="*",
        default=list(IP_LIMIT_EXEMPT),
        metavar="CIDR",
        help="networks the two per-IP limits skip (a reverse proxy on this host shows all"
        " its clients as one address: limit them at the proxy); give none to exempt none",
    )
    limits.add_argument(
        "--ping-interval",
        type=float,
        default=PING_INTERVAL,
        help="seconds between keepalive pings to an idle client; 0 disables",
    )
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


def build_token_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-hub token",
        description="Print a signed token that lets one member join a hub started with the"
        " same --jwt-secret-file (or the public half of --jwt-private-key). Give it to that"
        " member only: fer-tui --token, FER_TUI_TOKEN or token in the config file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sub", required=True, help="the user name the token binds")
    parser.add_argument(
        "--rooms",
        nargs="+",
        action="extend",
        metavar="ROOM",
        default=None,
        help="rooms the token may join (default: any room)",
    )
    parser.add_argument(
        "--ttl", default="7d", help="how long it is valid: seconds, or with s, m, h, d or w"
    )
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--jwt-secret-file", type=Path, metavar="PATH", help="HS256 secret")
    key.add_argument(
        "--jwt-private-key",
        type=Path,
        metavar="PATH",
        help="PEM RSA (RS256) or P-256 (ES256) private key; needs the cryptography package",
    )
    return parser


def token_main(argv: Sequence[str]) -> None:
    """``fer-hub token``: print a token on stdout."""
    parser = build_token_parser()
    args = parser.parse_args(argv)
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        parser.error(str(exc))
    for room in args.rooms or ["lobby"]:
        # The hub's own join validation: a token for a name no join can carry is useless.
        try:
            protocol.parse_client_frame(protocol.join_frame(room, args.sub))
        except protocol.ProtocolError as exc:
            parser.error(exc.message.replace("user", "--sub").replace("room", "--rooms"))
    try:
        if args.jwt_secret_file is not None:
            key = JwtKey.from_secret_file(args.jwt_secret_file)
        else:
            key = JwtKey.from_private_key_file(args.jwt_private_key)
    except KeyFileError as exc:
        parser.error(str(exc))
    print(mint_token(key, args.sub, ttl, args.rooms))


def jwt_key_from_args(args: argparse.Namespace) -> JwtKey | None:
    """The key of ``--jwt-secret-file`` or ``--jwt-public-key``; raise KeyFileError."""
    if args.jwt_secret_file is not None:
        return JwtKey.from_secret_file(args.jwt_secret_file)
    if args.jwt_public_key is not None:
        return JwtKey.from_public_key_file(args.jwt_public_key)
    return None


def config_from_args(args: argparse.Namespace, jwt_key: JwtKey | None = None) -> HubConfig:
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
        jwt_key=jwt_key,
        jwt_leeway=args.jwt_leeway,
        history_db=args.history_db,
        history_keep=args.history_keep,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_backlog_bytes=args.max_backlog_bytes,
        max_connections=args.max_connections,
        max_handshakes_per_ip=args.max_handshakes_per_ip,
        max_connections_per_ip=args.max_connections_per_ip,
        ip_limit_exempt=tuple(args.ip_limit_exempt),
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout,
        redis_url=args.redis,
        redis_heartbeat=args.redis_heartbeat,
        hub_id=args.hub_id,
    )


def _resolve_once(future: asyncio.Future[int], value: int) -> None:
    if not future.done():  # a second signal while closing changes nothing
        future.set_result(value)


async def run(config: HubConfig) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _resolve_once, stop, sig)
    async with serve_hub(config) as running:
        settle_garbage_collector()
        # One parseable line for scripts and tests that start the hub on port 0.
        print(f"fer-hub listening on {running.url}", flush=True)
        received = await stop
        logging.getLogger("hub").info("%s: shutting down", signal.Signals(received).name)


#: Allocations (net) between young-generation collections; Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Take what start-up loaded out of the collector's sight, and collect young objects less often.

    The modules, the engine and the server live as long as the process, yet
    each full collection walks them all again; a ``--redis`` hub under load
    also keeps a few posts per connection in flight, which the default
    threshold scans many times over before they are answered (``bench/hub_bench.py
    --hubs 1``, push rows, shows the hub's CPU per message).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


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


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (checked before the event loop starts)."""
    try:
        return find_spec(module) is not None
    except ImportError:  # a finder that refuses it, as an uninstalled package reads
        return False


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["token"]:
        token_main(argv[1:])
        return
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
    if args.max_handshakes_per_ip < 0 or args.max_connections_per_ip < 0 or args.jwt_leeway < 0:
        build_parser().error("per-IP limits and --jwt-leeway must not be negative")
    if args.redis is not None and not _installed("redis"):
        build_parser().error("--redis needs the redis extra: pip install 'fer-tms[redis]'")
    if args.redis is not None:
        from .redis_nodes import split_seeds

        try:
            split_seeds(args.redis)
        except ValueError as exc:
            build_parser().error(f"--redis: {exc}")
    try:
        for network in args.ip_limit_exempt:
            ipaddress.ip_network(network)
    except ValueError as exc:
        build_parser().error(f"--ip-limit-exempt: {exc}")
    try:
        jwt_key = jwt_key_from_args(args)
    except KeyFileError as exc:
        build_parser().error(str(exc))
    try:
        run_loop(run(config_from_args(args, jwt_key)), args.loop)
    except (OSError, RuntimeError) as exc:
        logging.getLogger("hub").error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
