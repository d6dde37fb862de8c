"""Issue 25's typing and presence, against a real chat-server: on SQLite one process, on PostgreSQL two worker
processes whose streams hear each other through NOTIFY. Both are ephemeral: they reach only the people who share the
chat (or a chat with the user), carry no id, and are never replayed on resume nor in the JSON form.

A stream's ephemeral events wait in a queue of their own (tests/sse.py). A negative ("carol never got it") is
asserted with a marker: something published after it that the same person does get, first."""

import time

import pytest

from chat_server.streams import typists as typists_module
from tests.test_races_conversations import BACKENDS, Person, new_client, registering, running

GRACE = 1  # --presence-grace: offline shows this long after the last stream closes


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    with running(request.param, "--presence-grace", str(GRACE), "--presence-timeout", "3") as started:
        yield started


def typing(person: Person, chat_id: int, op: str, client=None) -> None:
    answer = (client or person.client).post(f"/chats/{chat_id}/typing", data={"op": op})
    assert answer.status_code == 204, answer.text
    assert answer.content == b""


def test_typing_reaches_the_other_members_only_and_stops_on_send(people, streams):
    alice, bob, carol = people(3)
    shared = alice.new_chat(bob)
    with_carol = alice.new_chat(carol)
    to_alice, to_bob, to_carol = streams(alice, bob, carol)
    typing(alice, shared, "start")
    started = to_bob.next_ephemeral("typing")
    assert started.id is None
    assert started.data == {"chat_id": shared, "user_id": alice.id, "active": True, "expires_in_ms": 8000,
                            "resend_in_ms": 5000}  # fmt: skip
    alice.send(shared, "done typing")
    assert to_bob.next_ephemeral("typing").data["active"] is False  # the send stopped it
    typing(alice, shared, "start")  # the next message, at once
    assert to_bob.next_ephemeral("typing").data["active"] is True
    typing(alice, shared, "stop")  # and given up, at once
    assert to_bob.next_ephemeral("typing").data["active"] is False
    # Carol's first typing event is the one in her chat, though Alice typed in the other first.
    typing(alice, with_carol, "start")
    assert to_carol.next_ephemeral("typing").data["chat_id"] == with_carol
    typing(alice, with_carol, "stop")
    assert to_carol.next_ephemeral("typing").data["active"] is False
    # Alice never hears her own typing: her marker is Bob's.
    typing(bob, shared, "start")
    assert to_alice.next_ephemeral("typing").data["user_id"] == bob.id


def test_typing_starts_within_two_seconds_are_dropped(people, streams, backend):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    (to_bob,) = streams(bob)
    with new_client(backend.api_url, alice.cookies, keep_alive=True) as same_worker:
        for _ in range(5):
            typing(alice, chat_id, "start", same_worker)
        typing(alice, chat_id, "stop", same_worker)
    assert [e.data["active"] for e in (to_bob.next_ephemeral("typing"), to_bob.next_ephemeral("typing"))] == [
        True,
        False,
    ]


def test_typing_is_never_replayed_nor_polled(people, streams):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    before = bob.last_event_id()
    (to_bob,) = streams(bob)
    typing(alice, chat_id, "start")
    assert to_bob.next_ephemeral("typing").data["active"] is True
    marker = alice.send(chat_id, "after typing")
    assert [e["type"] for e in bob.events_after(before)] == ["message.created"]
    with bob.stream(last_event_id=before) as resumed:
        assert [(e.kind, e.data["message"]["id"]) for e in resumed.replayed()] == [("message.created", marker)]
        assert resumed.drain_ephemeral() == []


def test_typing_needs_membership_and_a_known_op(people):
    alice, bob = people(2)
    chat_id = alice.new_chat()
    assert bob.client.post(f"/chats/{chat_id}/typing", data={"op": "start"}).status_code == 404
    assert alice.client.post(f"/chats/{chat_id}/typing", data={"op": "dance"}).status_code == 400
    assert alice.client.post(f"/chats/{chat_id}/typing", data={}).status_code == 400


def test_presence_goes_to_people_who_share_a_chat_only(people, streams):
    alice, bob, carol, dave = people(4)
    alice.new_chat(bob)
    carol.new_chat(dave)
    to_bob, to_carol = streams(bob, carol)
    (to_alice,) = streams(alice)
    assert to_bob.presence_of(alice.id) == {"user_id": alice.id, "state": "online", "status_text": ""}
    assert to_alice.presence_of(alice.id)["state"] == "online"  # her own, for her other devices
    (to_dave,) = streams(dave)
    # Dave came online after Alice: Carol hears Dave, and never heard Alice.
    first = to_carol.next_ephemeral("presence")
    while first.data["user_id"] == carol.id:
        first = to_carol.next_ephemeral("presence")
    assert first.data["user_id"] == dave.id
    to_dave.close()
    to_alice.close()
    assert to_bob.presence_of(alice.id, timeout=GRACE + 10)["state"] == "offline"


def test_presence_idle_status_text_and_lookup(people, streams):
    alice, bob, carol = people(3)
    alice.new_chat(bob)
    (to_bob,) = streams(bob)
    streams(alice)
    assert to_bob.presence_of(alice.id)["state"] == "online"
    answer = alice.client.put("/presence", data={"state": "idle"})
    assert answer.json() == {"user_id": alice.id, "state": "idle", "status_text": ""}
    assert to_bob.presence_of(alice.id)["state"] == "idle"
    answer = alice.client.put("/presence", data={"status_text": "at lunch 🍜", "state": "active"})
    assert answer.json() == {"user_id": alice.id, "state": "online", "status_text": "at lunch 🍜"}
    assert to_bob.presence_of(alice.id) == {"user_id": alice.id, "state": "online", "status_text": "at lunch 🍜"}
    looked_up = bob.client.get("/presence", params={"user_ids": [alice.id, carol.id, 999999, bob.id, alice.id]})
    assert looked_up.json()["presence"] == [
        {"user_id": alice.id, "state": "online", "status_text": "at lunch 🍜"},
        {"user_id": carol.id, "state": "unknown", "status_text": ""},
        {"user_id": 999999, "state": "unknown", "status_text": ""},
        {"user_id": bob.id, "state": "online", "status_text": ""},
    ]
    assert alice.client.put("/presence", data={"status_text": "x" * 81}).status_code == 400
    assert alice.client.put("/presence", data={}).status_code == 400
    assert bob.client.get("/presence", params={"user_ids": [1] * 101}).status_code == 400
    joined = bob.client.get("/presence", params={"user_ids": f"{alice.id},{carol.id}"})  # read as two ids too
    assert [answer["state"] for answer in joined.json()["presence"]] == ["online", "unknown"]
    assert bob.client.get("/presence", params={"user_ids": ",".join(["1"] * 101)}).status_code == 400


def test_reconnecting_within_the_grace_does_not_flap(people, streams):
    alice, bob = people(2)
    alice.new_chat(bob)
    (to_bob,) = streams(bob)
    (first,) = streams(alice)
    assert to_bob.presence_of(alice.id)["state"] == "online"
    first.close()
    streams(alice)  # back within the grace
    time.sleep(GRACE + 1)  # long enough for an offline to have gone out, were it wrong
    alice.client.put("/presence", data={"status_text": "back"})
    assert to_bob.presence_of(alice.id) == {"user_id": alice.id, "state": "online", "status_text": "back"}


# The other channels between worker processes: SQLite's table (the default with --workers above 1) and Redis. Eight
# streams of Bob's, each on a connection of its own, land on both workers but for a 1 in 128 chance.
TRANSPORTS = {"sqlite-table": (), "redis": ("--pubsub", "redis://127.0.0.1:6379")}


@pytest.fixture(scope="module", params=sorted(TRANSPORTS))
def two_workers(request):
    if request.param == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        except redis.exceptions.ConnectionError as exc:
            pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    options = ("--workers", "2", "--presence-grace", str(GRACE), *TRANSPORTS[request.param])
    with running("sqlite", *options) as started:
        yield started


def test_typing_and_presence_reach_streams_on_every_worker(two_workers):
    with registering(two_workers) as make:
        alice, bob = make(2)
        chat_id = alice.new_chat(bob)
        to_bob = [bob.stream() for _ in range(8)]
        try:
            for stream in to_bob:
                stream.ready()
            with alice.stream() as to_alice:
                to_alice.ready()
                for stream in to_bob:
                    assert stream.presence_of(alice.id)["state"] == "online"
                typing(alice, chat_id, "start")
                for stream in to_bob:
                    assert stream.next_ephemeral("typing").data == {"chat_id": chat_id, "user_id": alice.id,
                        "active": True, "expires_in_ms": 8000, "resend_in_ms": 5000}  # fmt: skip
            for stream in to_bob:
                assert stream.presence_of(alice.id, timeout=GRACE + 10)["state"] == "offline"
        finally:
            for stream in to_bob:
                stream.close()


def test_typists_throttle_starts_and_stops_and_stop_on_send_only_after_a_start(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(typists_module.time, "monotonic", lambda: clock[0])
    typists = typists_module.Typists()
    assert typists.sent(1, 7) is False  # nothing started: a send says nothing
    assert typists.start(1, 7) is True
    assert typists.start(1, 7) is False  # a re-send within 2 s
    assert typists.start(2, 7) is True and typists.start(1, 8) is True  # others' are their own
    assert typists.sent(1, 7) is True and typists.sent(1, 7) is False  # the send stopped it, once
    assert typists.start(1, 7) is True  # typing the next message: news, not a repeat
    assert typists.stop(1, 7) is True  # and emptying the box at once stops it, though a stop went out just now
    # Alternating as fast as it likes, a client gets two starts and two stops out in 2 s, no more.
    assert typists.start(1, 7) is False
    assert typists.stop(1, 7) is False
    clock[0] += 2
    assert typists.start(1, 7) is True
    assert typists.stop(1, 7) is True
    typists.heard(1, 7, False)  # its own stop, heard back: no second stop
    assert typists.start(1, 7) is True and typists.stop(1, 7) is True
    typists.heard(1, 7, False)
    assert typists.start(1, 7) is False  # three in 2 s
    typists.heard(1, 9, True)  # started through another process
    assert typists.start(1, 9) is False and typists.sent(1, 9) is True
    clock[0] += 9
    typists.heard(1, 9, True)
    clock[0] += 9  # expired at every client: a send has nothing to stop
    assert typists.sent(1, 9) is False


def test_list_typing_shows_who_types_now_to_members_only(people, streams):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob, carol)
    (to_carol,) = streams(carol)
    typing(alice, chat_id, "start")
    typing(bob, chat_id, "start")
    for _ in range(2):
        to_carol.next_ephemeral("typing")  # both heard (by every worker)
    now = carol.client.get(f"/chats/{chat_id}/typing").json()["typing"]
    assert [(t["user_id"], t["active"], t["resend_in_ms"]) for t in now] == [
        (alice.id, True, 5000),
        (bob.id, True, 5000),
    ]
    assert all(0 < t["expires_in_ms"] <= 8000 for t in now)
    assert [t["user_id"] for t in alice.client.get(f"/chats/{chat_id}/typing").json()["typing"]] == [bob.id]
    typing(bob, chat_id, "stop")
    to_carol.next_ephemeral("typing")
    assert [t["user_id"] for t in carol.client.get(f"/chats/{chat_id}/typing").json()["typing"]] == [alice.id]
    (dave,) = people(1)
    assert dave.client.get(f"/chats/{chat_id}/typing").status_code == 404


def test_deleting_an_account_while_streaming_leaves_presence_consistent(people, streams, backend):
    alice, bob = people(2)
    alice.new_chat(bob)
    (to_bob,) = streams(bob)
    (to_alice,) = streams(alice)
    assert to_bob.presence_of(alice.id)["state"] == "online"
    assert alice.client.delete(f"/user/{alice.id}").status_code == 200
    to_alice.ended.wait(10)
    # Her stream's close is written after her account is gone: nothing to publish, nothing failing. Bob's own
    # status change is the marker that the server went on.
    assert bob.client.put("/presence", data={"status_text": "still here"}).status_code == 200
    while to_bob.presence_of(bob.id)["status_text"] != "still here":  # his own online came first
        pass
    time.sleep(0.5)
    assert "writing presence failed" not in backend.server.log()
    assert backend.rows("SELECT count(*) FROM user_presence WHERE user_id = ?", alice.id) == [(0,)]
