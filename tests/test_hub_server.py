"""A real hub on 127.0.0.1 with real websockets clients."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from hub_fixtures import WAIT, Peer, config, hub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from fer_tui.emotions import LABELS
from hub import protocol
from hub.protocol import Emotion
from hub.server import open_store
from hub.storage import SqliteStore

pytestmark = pytest.mark.timeout(60)


async def test_broadcast_reaches_all_members_and_only_them() -> None:
    async with (
        hub() as running,
        Peer.open(running.url) as ana,
        Peer.open(running.url) as bo,
        Peer.open(running.url) as cy,
        Peer.open(running.url) as outsider,
    ):
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await cy.join("lobby", "cy")
        await outsider.join("kitchen", "ana")  # same name, other room: fine
        await bo.say("m1", "hello", Emotion("happy", 0.75))
        for peer in (ana, bo, cy):
            message = await peer.recv_type("message")
            assert message == {
                "type": "message",
                "room": "lobby",
                "seq": 1,
                "id": "m1",
                "user": "bo",
                "text": "hello",
                "emotion": {"label": "happy", "confidence": 0.75},
                "action": False,
                "to": None,
                "ts": message["ts"],
            }
        assert await outsider.silent()
        await outsider.say("k1", "in the kitchen")
        assert (await outsider.recv_type("message"))["seq"] == 1
        assert await ana.silent()


async def test_spoofed_user_room_and_seq_are_ignored() -> None:
    async with hub() as running, Peer.open(running.url) as ana, Peer.open(running.url) as bo:
        await ana.join("lobby", "ana")
        await bo.join("lobby", "bo")
        await ana.send(
            {
                "type": "message",
                "id": "x",
                "text": "I am bo",
                "emotion": None,
                "user": "bo",
                "room": "admin",
                "seq": 1000,
                "ts": 0,
            }
        )
        message = await bo.recv_type("message")
        assert (message["user"], message["room"], message["seq"]) == ("ana", "lobby", 1)
        assert message["ts"] > 1e9
        assert "admin" not in running.core.rooms


async def test_name_taken_then_session_takeover() -> None:
    async with (
        hub() as running,
        Peer.open(running.url) as first,
        Peer.open(running.url) as witness,
    ):
        await first.join("r", "ana", session="s3cret")
        await witness.join("r", "wit")
        async with Peer.open(running.url) as impostor:
            await impostor.send(protocol.join_frame("r", "ana", session="guess"))
            await impostor.expect_error("name_taken")
        async with Peer.open(running.url) as second:
            joined = await second.join("r", "ana", session="s3cret")
            assert [m["user"] for m in joined["members"]] == ["ana", "wit"]
            await first.expect_error("session_replaced")
            assert await first.expect_close() == (1000, "session_replaced")
            await second.say("after", "still me")
            assert (await witness.recv_type("message"))["user"] == "ana"
        # The takeover produced no leave/join noise; the second's exit does.
        presence = await witness.recv_type("presence")
        assert (presence["event"], presence["user"]) == ("leave", "ana")


async def test_history_on_join_and_exact_resume_with_since() -> None:
    async with hub(limits={"history_size": 5, "rate_burst": 50}) as running:
        async with Peer.open(running.url) as ana:
            await ana.join("r", "ana")
            for i in range(1, 8):
                await ana.say(f"m{i}", f"text {i}")
                assert (await ana.recv_type("message"))["seq"] == i
        async with Peer.open(running.url) as late:
            joined = await late.join("r", "late")
            assert [m["text"] for m in joined["history"]] == [f"text {i}" for i in range(3, 8)]
            assert joined["seq"] == 7
        async with Peer.open(running.url) as back:
            joined = await back.join("r", "ana", since=5)
            assert [m["seq"] for m in joined["history"]] == [6, 7]
            assert joined["truncated"] is False


async def test_reconnect_resend_is_acknowledged_not_rebroadcast() -> None:
    async with hub() as running, Peer.open(running.url) as bo:
        await bo.join("r", "bo")
        async with Peer.open(running.url) as ana:
            await ana.join("r", "ana", session="s")
            await ana.say("once", "only once")
            ack = await ana.recv_type("message")
        async with Peer.open(running.url) as ana:
            # Reconnect and resend: the ack arrived, but the client may not know.
            joined = await ana.join("r", "ana", since=0, session="s")
            assert joined["history"] == [ack]
            await ana.say("once", "only once")
            assert await ana.recv_type("message") == ack
            await ana.say("twice", "a new one")
            assert (await ana.recv_type("message"))["seq"] == 2
        seen = [f["id"] for f in await bo.drain() if f["type"] == "message"]
        assert seen == ["once", "twice"]


async def test_text_too_long_and_garbage_get_errors_and_the_connection_lives() -> None:
    limits = {"max_text_chars": 10, "rate_burst": 50}
    async with hub(limits=limits) as running, Peer.open(running.url) as ana:
        await ana.say("early")
        await ana.expect_error("not_joined")
        await ana.join("r", "ana")
        await ana.say("long", "x" * 11)
        await ana.expect_error("text_too_long")
        await ana.send("{oops")
        await ana.expect_error("bad_json")
        await ana.send({"type": "message", "id": "a", "text": ["list"]})
        await ana.expect_error("bad_field")
        await ana.send({"type": "message", "id": "a", "text": "hi", "emotion": {"label": "joy"}})
        await ana.expect_error("bad_emotion")
        await ana.say("ok", "x" * 10)
        assert (await ana.recv_type("message"))["seq"] == 1


async def test_frame_too_big_closes_with_1009() -> None:
    async with hub(limits={"max_frame_bytes": 1000}) as running:
        async with Peer.open(running.url) as ana:
            await ana.join("r", "ana")
            await ana.send("x" * 1001)
            await ana.expect_error("frame_too_big")
            assert (await ana.expect_close())[0] == 1009
        async with Peer.open(running.url, max_size=None) as huge:
            # Far over the limit: websockets refuses it before it is buffered.
            await huge.send("x" * 100_000)
            assert (await huge.expect_close())[0] == 1009
        assert running.core.rooms["r"].members == {}


async def test_binary_frame_closes_with_1003() -> None:
    async with hub() as running, Peer.open(running.url) as ana:
        await ana.join("r", "ana")
        await ana.send(b"\x00\x01")
        await ana.expect_error("binary_frame")
        assert (await ana.expect_close())[0] == 1003


async def test_rate_limit_then_close_with_1008() -> None:
    limits = {"rate_per_second": 1.0, "rate_burst": 3, "max_strikes": 5}
    async with (
        hub(limits=limits) as running,
        Peer.open(running.url) as spammer,
        Peer.open(running.url) as bo,
    ):
        await spammer.join("r", "spam")
        await bo.join("r", "bo")
        for i in range(20):
            await spammer.say(f"s{i}")
        codes = []
        with pytest.raises(ConnectionClosed):
            while True:
                frame = await spammer.recv()
                if frame["type"] != "presence":  # bo's join
                    codes.append(frame.get("code") or frame["type"])
        assert codes[:2] == ["message", "message"]  # join took the third token
        assert codes[2:] == ["rate_limited"] * 4 + ["too_many_errors"]
        assert spammer.ws.close_code == 1008
        # bo saw the two accepted messages, then spam's leave, and can chat.
        assert [(await bo.recv_type("message"))["id"] for _ in range(2)] == ["s0", "s1"]
        await bo.say("b")
        assert (await bo.recv_type("message"))["seq"] == 3


async def test_token_required_on_join() -> None:
    async with hub(token="sesame") as running:
        async with Peer.open(running.url) as wrong:
            await wrong.send(protocol.join_frame("r", "eve", token="guess"))
            await wrong.expect_error("unauthorized")
            assert (await wrong.expect_close())[0] == 1008
        async with Peer.open(running.url) as missing:
            await missing.send(protocol.join_frame("r", "eve"))
            await missing.expect_error("unauthorized")
        async with Peer.open(running.url) as right:
            await right.join("r", "ana", token="sesame")


# --- hostile input ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "message", "joined", "error", "", "presence"])},
    optional={
        "room": json_values | st.just("r"),
        "user": json_values | st.just("ana"),
        "id": json_values,
        "text": json_values,
        "since": json_values,
        "session": json_values,
        "seq": json_values,
        "emotion": json_values
        | st.fixed_dictionaries({"label": st.sampled_from(LABELS), "confidence": json_values}),
    },
).map(json.dumps)
garbage = st.one_of(
    frame_like,
    st.text(max_size=200),
    st.binary(max_size=64),
    json_values.map(json.dumps),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(garbage, min_size=1, max_size=15))
def test_garbage_never_breaks_the_hub_for_others(frames: list[str | bytes]) -> None:
    failures = _ErrorLog()
    server_log = logging.getLogger("websockets.server")
    server_log.addHandler(failures)
    try:
        asyncio.run(asyncio.wait_for(_garbage_scenario(frames), 30))
    finally:
        server_log.removeHandler(failures)
    assert failures.records == [], "a connection handler raised"


class _ErrorLog(logging.Handler):
    """Collects ERROR records: websockets logs a handler that raised at that level."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


async def _garbage_scenario(frames: list[str | bytes]) -> None:
    async with (
        hub(limits={"rate_burst": 100, "max_strikes": 5}) as running,
        Peer.open(running.url) as ana,
        Peer.open(running.url) as bo,
    ):
        await ana.join("r", "ana")
        await bo.join("r", "bo")
        vandal = await connect(running.url)
        try:
            for frame in frames:
                try:
                    await vandal.send(frame)
                except ConnectionClosed:
                    vandal = await connect(running.url)  # closed for abuse: come back
            await ana.say("after", "still here")
            message = await bo.recv_type("message")
            assert (message["user"], message["id"]) == ("ana", "after")
        finally:
            await vandal.close()
        assert {"ana", "bo"} <= set(running.core.rooms["r"].members)


# --- slow and busy clients ----------------------------------------------------


async def _raw_peer(url: str, rcvbuf: int) -> Peer:
    """A peer whose socket buffers almost nothing, so the hub sees its backlog."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    ws = await connect(url, sock=sock, max_queue=1, open_timeout=WAIT, close_timeout=1)
    return Peer(ws)


async def _read_messages(peer: Peer, count: int) -> tuple[list[int], list[dict]]:
    """Read until ``count`` messages came; return their seqs and the other frames."""
    seqs, others = [], []
    while len(seqs) < count:
        frame = await peer.recv()
        if frame["type"] == "message":
            seqs.append(frame["seq"])
        else:
            others.append(frame)
    return seqs, others


async def test_slow_consumer_is_evicted_without_stalling_the_room() -> None:
    # 8 MB in all: more than the kernel buffers on a loopback socket (4 MB).
    count, text, cap = 400, "x" * 20_000, 256 * 1024
    limits = {
        "rate_per_second": 10_000.0,
        "rate_burst": 10_000,
        "max_text_chars": 20_000,
        "max_frame_bytes": 32 * 1024,
    }
    async with (
        hub(limits=limits, max_backlog_bytes=cap) as running,
        Peer.open(running.url) as ana,
        Peer.open(running.url) as bo,
    ):
        slow = await _raw_peer(running.url, rcvbuf=4096)
        await slow.join("r", "slow")
        await ana.join("r", "ana")
        await bo.join("r", "bo")
        slow_link = running.core.rooms["r"].members["slow"].client.handle
        slow.ws.transport.pause_reading()  # it stops reading altogether
        bo_reads = asyncio.create_task(_read_messages(bo, count))
        async with asyncio.timeout(WAIT * 4):
            for i in range(count):  # ana waits for each ack, as a client would
                await ana.say(f"m{i}", text)
                assert (await ana.recv_type("message"))["seq"] == i + 1
            seqs, others = await bo_reads
        assert seqs == list(range(1, count + 1))  # bo lost nothing and was not held up
        others += await bo.drain(0.2)
        leaves = [f["user"] for f in others if f.get("event") == "leave"]
        assert leaves == ["slow"]
        assert set(running.core.rooms["r"].members) == {"ana", "bo"}
        # The hub stopped writing to it once the backlog passed the cap.
        print("slow peer got", slow_link.sent_bytes, "of", count * len(text))
        assert slow_link.sent_bytes < count * len(text) / 2
        slow.ws.transport.abort()


async def test_busy_client_is_not_dropped_by_keepalive_but_a_dead_one_is() -> None:
    limits = {"rate_per_second": 1000.0, "rate_burst": 1000}
    async with (
        hub(limits=limits, ping_interval=0.3, ping_timeout=0.8) as running,
        Peer.open(running.url) as ana,
        Peer.open(running.url) as busy,
    ):
        await ana.join("r", "ana")
        await busy.join("r", "busy")
        # busy reads nothing, not even pings, for 3 s (over 3 ping timeouts)
        # while the room talks: a plain ping timeout would drop it.
        busy.ws.transport.pause_reading()
        for i in range(60):
            await ana.say(f"m{i}")
            await asyncio.sleep(0.05)
        busy.ws.transport.resume_reading()
        seqs = [(await busy.recv_type("message"))["seq"] for _ in range(60)]
        assert seqs == list(range(1, 61))
        assert "busy" in running.core.rooms["r"].members

        # A peer that stops answering in a quiet room is dropped within
        # ping_interval + ping_timeout (plus scheduling slack).
        assert len([f for f in await ana.drain(0.1) if f["type"] == "message"]) == 60
        busy.ws.transport.pause_reading()
        loop = asyncio.get_running_loop()
        start = loop.time()
        presence = await ana.recv_type("presence", timeout=WAIT)
        assert (presence["event"], presence["user"]) == ("leave", "busy")
        assert loop.time() - start < 3.0


# --- transport security ---------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    async with hub(certfile=cert, keyfile=key) as running:
        assert running.url.startswith("wss://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        async with Peer.open(running.url, ssl=context) as ana:
            await ana.join("r", "ana")
            await ana.say("secure", "over TLS")
            assert (await ana.recv_type("message"))["text"] == "over TLS"
        # Plain ws:// to a wss:// hub does not get in.
        with pytest.raises((InvalidMessage, ConnectionClosed, OSError, TimeoutError)):
            async with Peer.open(running.url.replace("wss://", "ws://")) as plain:
                await plain.join("r", "plain")
        # An unverified certificate is refused by a verifying client.
        with pytest.raises(ssl.SSLError):
            async with Peer.open(running.url, ssl=ssl.create_default_context()):
                pass


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_written_by_the_hub_match_websockets_own(size: int) -> None:
    from websockets.frames import Frame, Opcode

    from hub.server import _text_frame

    payload = b"x" * size
    assert _text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


async def test_embedded_hub_on_an_ephemeral_port_closes_clients_with_1001() -> None:
    async with hub() as running:
        assert running.port != 0 and running.url == f"ws://127.0.0.1:{running.port}"
        peer_cm = Peer.open(running.url)
        ana = await peer_cm.__aenter__()
        await ana.join("r", "ana")
    # Leaving the block closed the connection cleanly, as SIGTERM does.
    assert (await ana.expect_close())[0] == 1001
    await peer_cm.__aexit__(None, None, None)


async def test_a_connection_that_never_joins_is_closed() -> None:
    async with hub(limits={"join_timeout": 0.3}) as running, Peer.open(running.url) as idle:
        await idle.expect_error("join_timeout")
        assert (await idle.expect_close())[0] == 1008
        async with Peer.open(running.url) as prompt:
            await prompt.join("r", "ana")
            assert await prompt.silent(0.5)  # joined in time: left alone


def test_history_db_keeps_at_least_the_history_a_join_gets(tmp_path: Path) -> None:
    for keep, expected in ((2, 5), (50, 50)):
        store = open_store(
            config(history_db=tmp_path / "h.sqlite3", history_keep=keep, limits={"history_size": 5})
        )
        try:
            assert isinstance(store, SqliteStore) and store.keep == expected
        finally:
            store.close()


async def test_connections_over_the_cap_are_refused_with_503_and_others_live_on() -> None:
    from websockets.exceptions import InvalidStatus

    async with hub(max_connections=2) as running:
        async with Peer.open(running.url) as ana, Peer.open(running.url) as bo:
            with pytest.raises(InvalidStatus) as refused:
                async with Peer.open(running.url):
                    pass
            assert refused.value.response.status_code == 503
            await ana.join("r", "ana")
            await bo.join("r", "bo")
            await ana.say("m1")
            assert (await bo.recv_type("message"))["id"] == "m1"
        # Once they have gone, a new client gets in.
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    async with Peer.open(running.url) as cy:
                        await cy.join("r", "cy")
                        break
                except InvalidStatus:
                    await asyncio.sleep(0.05)
