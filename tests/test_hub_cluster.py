"""The sans-I/O core of a hub among several (:mod:`hub.cluster`), driven by hand.

No Redis here: the tests play the engine, answering the core's calls and
feeding it events, with losses and reorderings that a real subscription only
shows under failure.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from hub import protocol
from hub.cluster import (
    Call,
    ClusterHub,
    Event,
    JoinCall,
    JoinResult,
    LeaveCall,
    PostCall,
    SyncCall,
    SyncResult,
    decode_event,
    encode_event,
)
from hub.protocol import ChatMessage, Emotion, Member
from hub.rooms import Action, Broadcast, Client, Close, Reply

ROOM = "r"


def message(seq: int, user: str = "zed", text: str = "hi") -> ChatMessage:
    return ChatMessage(ROOM, seq, f"id{seq}", user, text, None, 1.5)


def message_event(pos: int, seq: int) -> Event:
    return Event(pos, "m", seq=seq, frame=protocol.chat_frame(message(seq)))


def frames_for(client: Client, actions: list[Action]) -> list[dict]:
    """The frames ``actions`` send to ``client``, decoded, in order."""
    out = []
    for action in actions:
        to_client = isinstance(action, Reply) and action.client is client
        if to_client or (isinstance(action, Broadcast) and client in action.clients):
            out.append(json.loads(action.frame))
    return out


def join(hub: ClusterHub, user: str, since: int | None = None) -> tuple[Client, JoinCall]:
    client = hub.connect(0.0)
    (action,) = hub.receive_text(client, protocol.join_frame(ROOM, user, since, None, "s"), 0.0)
    assert isinstance(action, Call) and isinstance(action.request, JoinCall)
    return client, action.request


def joined(hub: ClusterHub, user: str, pos: int, seq: int = 0) -> Client:
    client, call = join(hub, user)
    result = JoinResult(pos=pos, seq=seq, members=(Member(user, None),))
    assert frames_for(client, hub.join_done(call, result))[0]["type"] == "joined"
    return client


# --- events on the wire --------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@given(
    pos=st.integers(1, 2**40),
    kind=st.sampled_from("jlr"),
    user=names,
    conn=st.from_regex(r"[0-9a-f]{8}\.[0-9]{1,4}", fullmatch=True),
    members=st.lists(st.tuples(names, st.none() | st.sampled_from(["happy", "sad"]))),
)
def test_presence_events_round_trip(pos, kind, user, conn, members) -> None:
    people = tuple(Member(u, None if e is None else Emotion(e, 0.5)) for u, e in members)
    event = Event(pos, kind, user=user, conn=conn, members=people)
    assert decode_event(encode_event(event)) == event


@given(pos=st.integers(1, 2**40), seq=st.integers(1, 2**40), text=names)
def test_message_events_carry_the_chat_frame_verbatim(pos, seq, text) -> None:
    frame = protocol.chat_frame(ChatMessage(ROOM, seq, "i", "u", text, None, 2.0))
    event = decode_event(encode_event(Event(pos, "m", seq=seq, frame=frame)))
    assert (event.pos, event.seq, event.frame) == (pos, seq, frame)


# --- joins -----------------------------------------------------------------------------


def test_a_join_asks_the_engine_and_holds_events_until_its_pos_is_known() -> None:
    hub = ClusterHub(hub_id="h1")
    client, call = join(hub, "ana", since=3)
    assert (call.room, call.user, call.session, call.since) == (ROOM, "ana", "s", 3)
    assert call.conn.startswith("h1.")
    # Events published around the join arrive before the engine's answer.
    assert hub.event(ROOM, message_event(10, 4)) == []
    assert hub.event(ROOM, message_event(11, 5)) == []
    assert hub.event(ROOM, message_event(12, 6)) == []
    result = JoinResult(pos=11, seq=5, members=(Member("ana", None),), history=(message(4),))
    frames = frames_for(client, hub.join_done(call, result))
    assert [f["type"] for f in frames] == ["joined", "message"]
    assert [m["seq"] for m in frames[0]["history"]] == [4]
    assert frames[1]["seq"] == 6  # only what came after the join's pos
    assert frames_for(client, hub.event(ROOM, message_event(13, 7)))[0]["seq"] == 7


def test_a_refused_join_leaves_the_connection_free_to_try_again() -> None:
    hub = ClusterHub()
    client, call = join(hub, "ana")
    frames = frames_for(client, hub.join_done(call, JoinResult(refused="name_taken")))
    assert frames == [{"type": "error", "code": "name_taken", "message": "ana is already in r"}]
    assert client.room is None
    actions = hub.receive_text(client, protocol.join_frame(ROOM, "bo", None, None, None), 0.0)
    assert isinstance(actions[0], Call)


def test_a_join_that_cannot_reach_the_engine_closes_with_try_again_later() -> None:
    hub = ClusterHub()
    client, call = join(hub, "ana")
    actions = hub.call_failed(call, "down")
    assert frames_for(client, actions) == [
        {"type": "error", "code": "unavailable", "message": "down"}
    ]
    assert Close(client, protocol.CLOSE_TRY_AGAIN_LATER, "unavailable") in actions


def test_a_connection_gone_before_its_join_completes_is_unregistered() -> None:
    hub = ClusterHub()
    client, call = join(hub, "ana")
    (leave,) = hub.disconnect(client)
    assert isinstance(leave, Call) and leave.request == LeaveCall(ROOM, "ana", call.conn)
    # The engine registered it meanwhile: the core asks to undo that too.
    again = hub.join_done(call, JoinResult(pos=1))
    assert again == [Call(LeaveCall(ROOM, "ana", call.conn))]


# --- messages ----------------------------------------------------------------------------


def test_a_message_is_acknowledged_by_its_event_not_by_the_call() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1)
    (action,) = hub.receive_text(ana, protocol.message_frame("m1", "hello"), 5.0)
    assert isinstance(action, Call) and isinstance(action.request, PostCall)
    posted = action.request.message
    assert (posted.user, posted.id, posted.text, posted.ts) == ("ana", "m1", "hello", 5.0)
    assert hub.post_done(action.request, None) == []
    earlier = message(3, user="ana")
    assert frames_for(ana, hub.post_done(action.request, earlier)) == [earlier.to_json()]


def test_a_post_that_cannot_reach_the_engine_says_unavailable_and_keeps_the_connection() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1)
    (action,) = hub.receive_text(ana, protocol.message_frame("m1", "hello"), 5.0)
    actions = hub.call_failed(action.request, "down")
    assert frames_for(ana, actions)[0]["code"] == "unavailable"
    assert not any(isinstance(a, Close) for a in actions)


def test_message_before_join_is_refused_without_a_call() -> None:
    hub = ClusterHub()
    client = hub.connect(0.0)
    (action,) = hub.receive_text(client, protocol.message_frame("m1", "x"), 0.0)
    assert isinstance(action, Reply) and json.loads(action.frame)["code"] == "not_joined"


def test_events_already_seen_are_ignored() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1)
    assert frames_for(ana, hub.event(ROOM, message_event(2, 1)))[0]["seq"] == 1
    assert hub.event(ROOM, message_event(2, 1)) == []
    assert hub.event(ROOM, message_event(1, 1)) == []


# --- presence and takeover ---------------------------------------------------------------


def test_presence_events_reach_members_who_joined_before_them() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1)
    members = (Member("ana", None), Member("bo", None))
    actions = hub.event(ROOM, Event(2, "j", user="bo", conn="other.1", members=members))
    (frame,) = frames_for(ana, actions)
    assert frame == protocol.decode(protocol.presence_frame("join", "bo", members))


def test_a_takeover_event_closes_the_old_local_connection_only() -> None:
    hub = ClusterHub(hub_id="h1")
    old, call = join(hub, "ana")
    hub.join_done(call, JoinResult(pos=1))
    bo = joined(hub, "bo", pos=2)
    hub.event(ROOM, Event(2, "j", user="bo", conn="h1.2", members=()))
    actions = hub.event(ROOM, Event(3, "r", user="ana", conn=call.conn, members=()))
    assert frames_for(old, actions)[0]["code"] == "session_replaced"
    assert Close(old, protocol.CLOSE_NORMAL, "session_replaced") in actions
    assert frames_for(bo, actions) == []
    assert hub.disconnect(old) == []  # no leave: the session lives on elsewhere


# --- gaps and resync ------------------------------------------------------------------------


def test_a_gap_asks_for_a_sync_and_buffers_until_it_is_answered() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1, seq=0)
    hub.event(ROOM, message_event(2, 1))
    (action,) = hub.event(ROOM, message_event(6, 4))  # pos 3..5 lost
    assert isinstance(action, Call)
    assert action.request == SyncCall(ROOM, since=1, limit=hub.limits.history_size)
    assert hub.event(ROOM, message_event(7, 5)) == []  # buffered while syncing
    members = (Member("ana", None), Member("cy", None))
    result = SyncResult(
        pos=6, seq=4, members=members, messages=(message(2), message(3), message(4))
    )
    frames = frames_for(ana, hub.sync_done(action.request, result))
    kinds = [(f["type"], f.get("seq", f.get("user"))) for f in frames]
    assert kinds == [
        ("message", 2),
        ("message", 3),
        ("message", 4),
        ("presence", "cy"),
        ("message", 5),
    ]


def test_resync_after_a_lost_subscription_covers_every_room() -> None:
    hub = ClusterHub()
    joined(hub, "ana", pos=1)
    (action,) = hub.resync()
    assert isinstance(action, Call) and isinstance(action.request, SyncCall)


def test_a_failed_sync_is_retried_and_keeps_the_events_buffered_meanwhile() -> None:
    """A quiet room may get no further event to ask again: the engine's retry must."""
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1, seq=0)
    (action,) = hub.resync()
    assert isinstance(action, Call) and isinstance(action.request, SyncCall)
    assert hub.event(ROOM, message_event(2, 1)) == []  # buffered while syncing
    hub.call_failed(action.request, "storage down")
    (retry,) = hub.retry_failed_syncs()
    assert isinstance(retry, Call) and retry.request == action.request
    assert hub.retry_failed_syncs() == []  # one sync in flight at a time
    frames = frames_for(ana, hub.sync_done(retry.request, SyncResult(1, 0, (), (), "")))
    assert [(f["type"], f["seq"]) for f in frames] == [("message", 1)]
    assert hub.retry_failed_syncs() == []


def test_an_unreachable_engine_is_reported_to_every_local_client() -> None:
    hub = ClusterHub()
    ana, bo = joined(hub, "ana", pos=1), joined(hub, "bo", pos=2)
    (action,) = hub.outage("storage down")
    assert isinstance(action, Broadcast) and set(action.clients) == {ana, bo}


def test_rooms_without_local_members_are_released() -> None:
    hub = ClusterHub()
    ana = joined(hub, "ana", pos=1)
    assert hub.idle_rooms() == []
    hub.disconnect(ana)
    assert hub.idle_rooms() == [ROOM]
    assert hub.rooms == {}


# --- the property: whatever is lost, each client sees each message once, in order -------------


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.lists(st.sampled_from("mmmjl"), min_size=1, max_size=60),
    lost=st.sets(st.integers(0, 59)),
    join_at=st.integers(0, 59),
)
def test_every_client_sees_every_message_once_in_seq_order(kinds, lost, join_at) -> None:
    # The room's true history: events numbered by pos, messages by seq.
    events: list[Event] = []
    seq = 0
    for pos, kind in enumerate(kinds, start=1):
        if kind == "m":
            seq += 1
            events.append(message_event(pos, seq))
        else:
            events.append(Event(pos, kind, user=f"u{pos}", conn=f"x.{pos}", members=()))
    join_at = min(join_at, len(events))

    def state_at(pos: int, since: int) -> SyncResult:
        msgs = [message(e.seq) for e in events[:pos] if e.kind == "m" and e.seq > since]
        seq_then = max([e.seq for e in events[:pos] if e.kind == "m"], default=0)
        return SyncResult(pos, seq_then, (), tuple(msgs))

    hub = ClusterHub(limits=protocol.Limits(history_size=1000))
    early = joined(hub, "early", pos=0)
    late, call = join(hub, "late")
    seen: dict[Client, list[int]] = {early: [], late: []}

    def record(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Call) and isinstance(action.request, SyncCall):
                # The engine answers with the state as of the newest event published.
                sync = action.request
                record(hub.sync_done(sync, state_at(published, sync.since)))
                continue
            for client, frames in ((c, frames_for(c, [action])) for c in seen):
                for frame in frames:
                    if frame["type"] == "message":
                        seen[client].append(frame["seq"])
                    elif frame["type"] == "joined":
                        seen[client].extend(m["seq"] for m in frame["history"])

    published = 0
    for index, event in enumerate(events):
        published = event.pos
        if index == join_at:
            history = state_at(event.pos - 1, 0)
            result = JoinResult(pos=event.pos - 1, seq=history.seq, history=history.messages)
            record(hub.join_done(call, result))
        if index not in lost or index == len(events) - 1:  # the last one always arrives
            record(hub.event(ROOM, event))
    if join_at >= len(events):
        history = state_at(len(events), 0)
        record(
            hub.join_done(
                call, JoinResult(pos=len(events), seq=history.seq, history=history.messages)
            )
        )

    assert seen[early] == list(range(1, seq + 1))
    assert seen[late] == list(range(1, seq + 1))
