"""Signed per-user tokens (``--jwt-secret-file``, ``--jwt-public-key``) and the client's token.

Every refusal is checked against the real hub on 127.0.0.1: ``unauthorized``
then close 1008. Bad tokens are crafted with PyJWT (``alg: none``, HS384,
RS256 with the hub on HS256, expired, not yet valid, other ``sub``, other
room). ``fer-hub token`` runs as a real process and its token opens a real
``fer-hub --jwt-secret-file`` process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from client_fixtures import wait_until
from hub_fixtures import REPO, WAIT, Peer, config, hub, start_hub_process

from fer_tui.config import load_settings
from fer_tui.connection import HubConnection, HubEvent, StateChanged
from hub import protocol
from hub.auth import (
    JwtAuthorizer,
    JwtKey,
    KeyFileError,
    SharedSecret,
    Unauthorized,
    mint_token,
    parse_duration,
)

SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef-test-secret"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "hub.secret"
    path.write_bytes(SECRET + b"\n")  # as `openssl rand -base64 48 > hub.secret` leaves it
    return path


def token(claims: dict[str, Any] | None = None, key: Any = SECRET, alg: str = "HS256") -> str:
    now = int(time.time())
    base = {"sub": "ada", "exp": now + 3600, "iat": now}
    return jwt.encode({**base, **(claims or {})}, key, algorithm=alg)


def _part(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT with any header and a junk signature (for algorithms we hold no key of)."""
    return f"{_part(json.dumps(header).encode())}.{_part(json.dumps(claims).encode())}.c2ln"


def hs256_by_hand(key: bytes, claims: dict[str, Any]) -> str:
    """HS256 with ``key`` as the secret, which PyJWT rightly refuses for a PEM key."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT"}, claims).rpartition(".")[0]
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


async def refused(url: str, raw_token: str | None, user: str = "ada", room: str = "lobby") -> str:
    """Join with ``raw_token``; assert unauthorized + 1008; return the error message."""
    async with Peer.open(url) as peer:
        await peer.send(protocol.join_frame(room, user, token=raw_token))
        error = await peer.expect_error("unauthorized")
        code, _ = await peer.expect_close()
        assert code == protocol.CLOSE_POLICY_VIOLATION
        return str(error["message"])


def far() -> int:
    return int(time.time()) + 3600


BAD_TOKENS: dict[str, Any] = {
    "no token": (None, "needs a signed token"),
    "bad signature": (lambda: token(key=b"another-secret-another-secret-xx"), "signature"),
    "alg none": (lambda: jwt.encode({"sub": "ada", "exp": far()}, "", algorithm="none"), "HS256"),
    "HS384": (lambda: token(alg="HS384"), "HS256"),
    "RS256 header": (
        lambda: unsigned({"alg": "RS256", "typ": "JWT"}, {"sub": "ada", "exp": far()}),
        "HS256",
    ),
    "expired": (lambda: token({"exp": int(time.time()) - 120}), "expired"),
    "not yet valid (nbf)": (lambda: token({"nbf": int(time.time()) + 600}), "not valid yet"),
    "issued in the future": (lambda: token({"iat": int(time.time()) + 600}), "not valid yet"),
    "other sub": (lambda: token({"sub": "bob"}), "'bob'"),
    "room not in rooms": (lambda: token({"rooms": ["dev", "ops"]}), "room 'lobby'"),
    "rooms not a list": (lambda: token({"rooms": "lobby"}), "malformed"),
    "sub not a string": (lambda: token({"sub": 7}), "malformed"),
    "no exp": (lambda: jwt.encode({"sub": "ada"}, SECRET, algorithm="HS256"), "'exp'"),
    "no sub": (lambda: jwt.encode({"exp": far()}, SECRET, algorithm="HS256"), "'sub'"),
    "garbage": (lambda: "not.a.jwt", "malformed"),
    "shared secret instead": (lambda: SECRET.decode(), "malformed"),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
async def test_each_bad_token_is_refused_with_unauthorized_and_1008(
    secret_file: Path, case: str
) -> None:
    make, why = BAD_TOKENS[case]
    raw = make() if callable(make) else make
    async with hub(jwt_key=JwtKey.from_secret_file(secret_file)) as running:
        assert why in await refused(running.url, raw)
        room = running.core.rooms.get("lobby")
        assert room is None or "ada" not in room.members


async def test_good_tokens_join_with_their_name_and_rooms(secret_file: Path) -> None:
    async with hub(jwt_key=JwtKey.from_secret_file(secret_file)) as running:
        async with Peer.open(running.url) as ada, Peer.open(running.url) as bo:
            joined = await ada.join("lobby", "ada", token=token({"rooms": ["lobby"]}))
            assert joined["user"] == "ada"
            await bo.join("dev", "bo", token=token({"sub": "bo"}))  # no rooms claim: any room
            await ada.say("m1", "signed hello")
            assert (await ada.recv_type("message"))["user"] == "ada"
        # Within the leeway (30 s by default) a just-expired token still passes.
        async with Peer.open(running.url) as late:
            await late.join("lobby", "ada", token=token({"exp": int(time.time()) - 5}))


async def test_a_token_cannot_take_a_name_held_by_another_token(secret_file: Path) -> None:
    # The name is bound: eve's valid token does not let her join as ada.
    async with hub(jwt_key=JwtKey.from_secret_file(secret_file)) as running:
        assert "'eve', not 'ada'" in await refused(running.url, token({"sub": "eve"}))


async def test_shared_secret_mode_still_works() -> None:
    async with hub(token="sesame") as running:
        assert "wrong or missing token" in await refused(running.url, "guess")
        async with Peer.open(running.url) as peer:
            await peer.join("lobby", "anyone", token="sesame")


def test_authorize_is_reusable_for_a_rename_without_sockets(secret_file: Path) -> None:
    check = JwtAuthorizer(JwtKey.from_secret_file(secret_file))
    ada = token({"rooms": ["lobby"]})
    check.authorize(ada, "ada", "lobby")
    with pytest.raises(Unauthorized, match="not 'ada2'"):
        check.authorize(ada, "ada2", "lobby")  # a /nick to another name
    with pytest.raises(Unauthorized, match="room 'dev'"):
        check.authorize(ada, "ada", "dev")
    SharedSecret("s").authorize("s", "anyone", "any")
    with pytest.raises(Unauthorized):
        SharedSecret("s").authorize(None, "anyone", "any")


def test_key_files_are_checked(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"too short\n")
    with pytest.raises(KeyFileError, match="at least 32"):
        JwtKey.from_secret_file(short)
    with pytest.raises(KeyFileError, match="cannot read"):
        JwtKey.from_secret_file(tmp_path / "missing")
    with pytest.raises(ValueError, match="exclude"):
        config(token="x", jwt_key=JwtKey("HS256", SECRET, SECRET)).authorizer()


def test_parse_duration() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("12h") == 43200
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("2w") == 14 * 86400
    for bad in ("", "0", "-1d", "7 days", "1y"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- RS256 / ES256 (need the cryptography package) -----------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_public_key_mode_accepts_its_algorithm_only(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("cryptography", reason="RS256/ES256 need the cryptography package")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private: Any = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "pub.pem").write_bytes(public)
    signer = JwtKey.from_private_key_file(tmp_path / "key.pem")
    key = JwtKey.from_public_key_file(tmp_path / "pub.pem")
    assert key.algorithm == signer.algorithm == ("RS256" if kind == "rsa" else "ES256")
    async with hub(jwt_key=key) as running:
        async with Peer.open(running.url) as peer:
            await peer.join("lobby", "ada", token=mint_token(signer, "ada", 60))
        # The public key used as an HMAC secret (the classic confusion) is refused.
        confused = hs256_by_hand(public, {"sub": "ada", "exp": far()})
        assert key.algorithm in await refused(running.url, confused)
    with pytest.raises(KeyFileError):
        JwtKey.from_public_key_file(tmp_path / "key.pem")  # a private key is not a public one


# --- the operator's CLI and the real processes ----------------------------------------


def fer_hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


async def test_fer_hub_token_opens_a_fer_hub_process(secret_file: Path) -> None:
    minted = fer_hub(
        "token", "--sub", "ada", "--rooms", "lobby", "--ttl", "7d",
        "--jwt-secret-file", str(secret_file),
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    raw = minted.stdout.strip()
    claims = jwt.decode(raw, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "ada" and claims["rooms"] == ["lobby"]
    assert claims["exp"] - claims["iat"] == 7 * 86400
    proc, url = start_hub_process("--jwt-secret-file", str(secret_file))
    try:
        async with Peer.open(url) as peer:
            await peer.join("lobby", "ada", token=raw)
        assert "room 'dev'" in await refused(url, raw, room="dev")
        assert "needs a signed token" in await refused(url, None)
    finally:
        proc.terminate()
        proc.wait(WAIT)


def test_fer_hub_cli_errors_are_clear(secret_file: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("short\n")
    for args, message in [
        (("token", "--sub", "ada", "--jwt-secret-file", str(short)), "at least 32"),
        (("token", "--sub", "ada", "--ttl", "soon", "--jwt-secret-file", str(secret_file)), "90s"),
        (("token", "--sub", "a\x1bb", "--jwt-secret-file", str(secret_file)), "U+001B"),
        (("token", "--sub", "ada"), "required"),
        (("--jwt-secret-file", str(tmp_path / "missing")), "cannot read"),
        (("--jwt-secret-file", str(secret_file), "--token", "x"), "not allowed with"),
        (("--ip-limit-exempt", "not-a-network"), "--ip-limit-exempt"),
    ]:
        result = fer_hub(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_help_shows_the_new_flags_and_their_defaults() -> None:
    text = fer_hub("--help").stdout
    for flag in ("--jwt-secret-file", "--jwt-public-key", "--max-handshakes-per-ip"):
        assert flag in text
    assert "(default: 60)" in text and "(default: 32)" in text  # the per-IP limits
    assert "fer-hub token" in text
    assert "--sub" in fer_hub("token", "--help").stdout


# --- the client's token --------------------------------------------------------------


def test_client_token_precedence_flag_then_env_then_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('token = "from-file"\n')
    assert load_settings({}, path, environ={}).token == "from-file"
    assert load_settings({}, path, environ={"FER_TUI_TOKEN": "from-env"}).token == "from-env"
    assert load_settings({}, path, environ={"FER_TUI_TOKEN": ""}).token == "from-file"
    flags = {"token": "from-flag"}
    assert load_settings(flags, path, environ={"FER_TUI_TOKEN": "from-env"}).token == "from-flag"


async def test_the_client_joins_a_jwt_hub_with_the_token_from_its_settings(
    secret_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('token = "stale"\n')
    settings = load_settings({}, path, environ={"FER_TUI_TOKEN": token()})
    async with hub(jwt_key=JwtKey.from_secret_file(secret_file)) as running:
        events: list[HubEvent] = []
        conn = HubConnection(running.url, "lobby", "ada", events.append, token=settings.token)
        task = asyncio.create_task(conn.run())
        try:
            await wait_until(lambda: conn.state == "online", what="joined with the env token")
        finally:
            await conn.close()
            await asyncio.wait_for(task, WAIT)
        # The stale file token alone is refused for good: no retry loop.
        events = []
        stale = load_settings({}, path, environ={}).token
        conn = HubConnection(running.url, "lobby", "ada", events.append, token=stale)
        await asyncio.wait_for(conn.run(), WAIT)
        assert conn.state == "stopped"
        last = [e for e in events if isinstance(e, StateChanged)][-1]
        assert "malformed token" in last.detail
