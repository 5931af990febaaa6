"""Log benchmark: a room at 1,000 msg/s through the real hub to the real app, new log vs old.

Run from the repo root (``bench/client_bench.py --log`` runs the same)::

    .venv/bin/python bench/log_bench.py                  # 1,000 msg/s for 10 s, 100k fill
    .venv/bin/python bench/log_bench.py --rate 200 --seconds 3 --fill 20000   # short

A hub runs as a child process (``--rate``/``--burst`` raised so the senders
are not throttled). The app under test runs in its own child process, headless
(``run_test``), joined to the room with the camera off: once with today's
virtual :class:`~fer_tui.widgets.message_log.MessageLog`, once with the old
one-``Static``-per-message log (``bench/old_message_log.py``, swapped in) as
the baseline. Two raw websocket senders in this process share the rate.

Per variant:

* **last message on screen after the burst**: from the senders' last send to
  the first moment the composed screen (what Textual would write to the
  terminal) holds the last message's text; ``perf_counter`` is
  CLOCK_MONOTONIC on Linux, one clock for all processes;
* **keystroke echo**: a key pressed through Pilot every 100 ms, from the
  press until the input's value holds it (median / p95), during the burst and
  for 20 presses after it (at most 60 s of them: the old log may take seconds a key);
* **RSS growth**: VmRSS after the burst minus before it.

Then **100k messages in scrollback**: a fresh app child gets ``--fill``
messages through its hub-event path (what the connection calls) and reports
its total VmRSS (the old log is not filled: at its measured KB per message it
would need several GB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SENDERS = 2
ROOM = "burst"
#: Longest wait for the last message to show; the old log may never catch up in time.
CATCH_UP_LIMIT = 60.0
#: Longest time spent on the 20 keystrokes after the burst (the old log takes seconds per key).
AFTER_LIMIT = 60.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the app under test (child process) --------------------------------------------


def _make_app(variant: str, url: str | None):
    from fer_tui.app import FerApp
    from fer_tui.config import Settings

    if variant == "old":
        from old_message_log import MessageLog as OldMessageLog

        import fer_tui.screens.chat as chat

        chat.MessageLog = OldMessageLog  # type: ignore[misc]  # ChatScreen composes this one

    class Bench(FerApp):
        def run_connection(self):  # type: ignore[override]
            if url is not None:
                return super().run_connection()
            return None

    room = f"{ROOM}-{variant}"  # each variant its own room: no history from the other
    settings = Settings(server=url or "ws://127.0.0.1:9", room=room, name="reader", camera="none")
    return Bench(settings, frame_source=None, embedded_port=0)


def _on_screen(app, text: str) -> bool:
    return any(text in strip.text for strip in app.screen._compositor.render_strips())


async def _press_timed(pilot, app, key: str) -> float:
    """ms from a key arriving (as the terminal driver delivers it) to the input holding it."""
    from textual import events

    field = app.chat.query_one("#message-input")
    before = len(field.value)
    event = events.Key(key, key)
    event.set_sender(app)
    start = time.perf_counter()
    app._driver.send_message(event)  # what Pilot.press does, without its wait for idle
    while len(field.value) == before:
        await asyncio.sleep(0.001)
    elapsed = (time.perf_counter() - start) * 1000
    if len(field.value) > 200:
        field.value = ""
    return elapsed


def burst_child(variant: str, url: str) -> None:
    """Join, print READY, echo keys while the parent's burst runs, report as JSON."""

    async def run() -> dict:
        app = _make_app(variant, url)
        async with app.run_test(size=(120, 40)) as pilot:
            while not (app.connection and app.connection.state == "online"):
                await asyncio.sleep(0.05)
            await pilot.pause(0.5)
            rss_before = rss_mb()
            print("READY", flush=True)
            done = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
            during = []
            while not done.done():
                during.append(await _press_timed(pilot, app, "x"))
                await asyncio.sleep(0.1)
            t_end, last_text = json.loads(done.result())
            deadline = t_end + CATCH_UP_LIMIT
            while not _on_screen(app, last_text) and time.perf_counter() < deadline:
                await asyncio.sleep(0.02)
            seen = time.perf_counter()
            shown = _on_screen(app, last_text)
            after: list[float] = []
            while len(after) < 20 and time.perf_counter() < seen + AFTER_LIMIT:
                after.append(await _press_timed(pilot, app, "y"))
            return {
                "catch_up_s": seen - t_end if shown else None,
                "echo_during": during,
                "echo_after": after,
                "rss_before": rss_before,
                "rss_after": rss_mb(),
                "received": len(app.chat.log_view.entries),
            }

    print(json.dumps(asyncio.run(run())), flush=True)


def fill_child(count: int) -> None:
    """``count`` messages through the app's hub-event path; report total VmRSS."""
    import gc

    from fer_tui.connection import MessageReceived
    from hub.protocol import ChatMessage, Emotion

    async def run() -> dict:
        app = _make_app("new", None)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            rss_before = rss_mb()
            start = time.perf_counter()
            for i in range(count):
                text = f"message {i} from the benchmark, about as long as a chat line is"
                message = ChatMessage(
                    ROOM, i + 1, f"m{i:08d}", f"user{i % 30}", text, Emotion("happy", 0.8), 1e9 + i
                )
                app._on_hub_event(app.room, MessageReceived(message, own=False))
                if i % 5_000 == 0:
                    await asyncio.sleep(0)
            app.chat.log_view.flush()
            await pilot.pause(0.2)
            shown = _on_screen(app, f"message {count - 1} ")
            gc.collect()
            return {
                "rss_before": rss_before,
                "rss_total": rss_mb(),
                "held": len(app.chat.log_view.entries),
                "shown": shown,
                "seconds": time.perf_counter() - start,
            }

    print(json.dumps(asyncio.run(run())), flush=True)


# --- the parent: hub, senders, report ------------------------------------------------


async def _sender(
    url: str, room: str, index: int, rate: float, seconds: float
) -> tuple[float, str]:
    from websockets.asyncio.client import connect

    from hub.protocol import Emotion, join_frame, message_frame

    async with connect(url, max_size=None) as ws:
        await ws.send(join_frame(room, f"sender{index}"))

        async def drain() -> None:
            async for _ in ws:
                pass

        drainer = asyncio.create_task(drain())
        total = int(rate * seconds)
        start = time.perf_counter()
        last = ""
        for i in range(total):
            last = f"b{index}-{i:06d} the quick brown fox jumps over the lazy dog"
            text = last
            await ws.send(message_frame(f"s{index}-{i}", text, Emotion("neutral", 0.6)))
            last = last.split()[0]  # a unique token that never wraps
            lag = start + (i + 1) / rate - time.perf_counter()
            if lag > 0:
                await asyncio.sleep(lag)
        end = time.perf_counter()
        await asyncio.sleep(0.5)
        drainer.cancel()
        return end, last


async def run_burst(variant: str, url: str, rate: float, seconds: float) -> dict:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        "burst",
        "--variant",
        variant,
        "--url",
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        while (await asyncio.wait_for(child.stdout.readline(), 60)).strip() != b"READY":
            pass
        results = await asyncio.gather(
            *(_sender(url, f"{ROOM}-{variant}", i, rate / SENDERS, seconds) for i in range(SENDERS))
        )
        t_end, last_text = max(results)
        child.stdin.write((json.dumps([t_end, last_text]) + "\n").encode())
        await child.stdin.drain()
        line = await asyncio.wait_for(child.stdout.readline(), CATCH_UP_LIMIT + AFTER_LIMIT + 180)
        return json.loads(line)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


def run_fill(count: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "fill", "--fill", str(count)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_hub(rate: float) -> tuple[subprocess.Popen[bytes], str]:
    from client_bench import _free_port

    port = _free_port()
    per_sender = str(int(rate / SENDERS * 2) + 10)
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--rate",
            per_sender,
            "--burst",
            per_sender,
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    return hub, f"ws://127.0.0.1:{port}"


def report(rate: float, seconds: float, fill: int) -> None:
    hub, url = start_hub(rate)
    try:
        burst = {v: asyncio.run(run_burst(v, url, rate, seconds)) for v in ("new", "old")}
    finally:
        hub.terminate()
        hub.wait(10)
    filled = run_fill(fill)
    sent = int(rate * seconds)

    def catch_up(r: dict) -> str:
        s = r["catch_up_s"]
        return f"{s:.2f}" if s is not None else f"> {CATCH_UP_LIMIT:.0f}"

    def echo(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} / {percentile(values, 0.95):.0f}"

    def ratio(new: float | None, old: float | None) -> str:
        if new is None or old is None or new <= 0:
            return "—" if old is not None or new is None else f"> {CATCH_UP_LIMIT / new:.0f}×"
        return f"{old / new:.1f}×"

    new, old = burst["new"], burst["old"]
    growth = {k: r["rss_after"] - r["rss_before"] for k, r in burst.items()}
    rows = [
        (
            "last message on screen after the burst (s)",
            catch_up(new),
            catch_up(old),
            ratio(new["catch_up_s"], old["catch_up_s"]),
            "≤ 2 s",
        ),
        (
            "keystroke echo during the burst (median / p95 ms)",
            echo(new["echo_during"]),
            echo(old["echo_during"]),
            ratio(statistics.median(new["echo_during"]), statistics.median(old["echo_during"])),
            "≤ 100 ms",
        ),
        (
            "keystroke echo after the burst (median / p95 ms)",
            echo(new["echo_after"]),
            echo(old["echo_after"]),
            ratio(statistics.median(new["echo_after"]), statistics.median(old["echo_after"])),
            "≤ 100 ms",
        ),
        (
            f"RSS growth over the burst (MB; {sent:,} messages)",
            f"{growth['new']:+.0f}",
            f"{growth['old']:+.0f}",
            ratio(max(growth["new"], 0.1), growth["old"]),
            "≤ +60 MB",
        ),
        (
            "messages received by the app",
            f"{new['received']:,}",
            f"{old['received']:,}",
            "—",
            f"{sent:,}",
        ),
        (
            f"RSS with {filled['held']:,} messages in scrollback (MB, total)",
            f"{filled['rss_total']:.0f}",
            f"~{old_rss_estimate(old, growth['old'], fill):.0f} (estimate)",
            "—",
            "≤ 150 MB",
        ),
    ]
    print(
        f"log benchmark: {rate:.0f} msg/s for {seconds:.0f} s from {SENDERS} senders through "
        f"a real hub to the real app (headless, 120×40); fill: {fill:,} messages "
        f"(shown: {filled['shown']}, {filled['seconds']:.1f} s); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    header = ("metric", "virtual log", "old per-widget log", "ratio", "goal")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def old_rss_estimate(old: dict, growth: float, fill: int) -> float:
    """The old log's RSS at ``fill`` messages, from its growth per message in the burst."""
    per_message = growth / max(old["received"], 1)
    return old["rss_before"] + per_message * fill


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second in all")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--fill", type=int, default=100_000, help="messages for the RSS fill")
    parser.add_argument("--child", choices=["burst", "fill"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=["new", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "burst":
        burst_child(args.variant, args.url)
    elif args.child == "fill":
        fill_child(args.fill)
    else:
        report(args.rate, args.seconds, args.fill)


if __name__ == "__main__":
    main()
