"""The original web app's stack, reduced to the hub's job: Flask-SocketIO on eventlet.

Run by ``bench/hub_bench.py`` with ``.bench-venv-socketio/bin/python``::

    python bench/flask_socketio_peer.py PORT

It does what the hub does per message, no more: on ``join`` it puts the
client in the room, answers ``joined`` and tells the room (``presence`` with
the member list); on ``message`` it stamps room, user, seq and ts and emits
the message to everyone in the room, the sender included. Engine.IO's own
keepalive is left at Flask-SocketIO's defaults, as the original app had it.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
import time  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet", logger=False, engineio_logger=False)

seqs: dict[str, int] = {}
members: dict[str, dict[str, str]] = {}  # room -> sid -> user
where: dict[str, tuple[str, str]] = {}  # sid -> (room, user)


def member_list(room: str) -> list[dict[str, object]]:
    return [{"user": user, "emotion": None} for user in members[room].values()]


@socketio.on("join")
def on_join(data: dict) -> None:
    room, user = str(data["room"]), str(data["user"])
    join_room(room)
    where[request.sid] = (room, user)
    members.setdefault(room, {})[request.sid] = user
    seqs.setdefault(room, 0)
    emit(
        "joined",
        {"room": room, "user": user, "members": member_list(room), "seq": seqs[room]},
    )
    emit(
        "presence",
        {"event": "join", "user": user, "members": member_list(room)},
        to=room,
        include_self=False,
    )


@socketio.on("message")
def on_message(data: dict) -> None:
    room, user = where[request.sid]
    seqs[room] += 1
    message = {
        "room": room,
        "seq": seqs[room],
        "id": data["id"],
        "user": user,
        "text": data["text"],
        "emotion": data.get("emotion"),
        "ts": time.time(),
    }
    emit("message", message, to=room)


@socketio.on("disconnect")
def on_disconnect(*_args: object) -> None:
    room_user = where.pop(request.sid, None)
    if room_user is not None:
        members[room_user[0]].pop(request.sid, None)


if __name__ == "__main__":
    print("flask-socketio peer listening", flush=True)
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_output=False)
