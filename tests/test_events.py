"""GET /api/events in its JSON form, the event log under it (who sees what, pruning, commit order), and streams
freeing their place as soon as clients go. Streams themselves are read from live servers in test_event_stream.py."""

import asyncio
import datetime
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from chat_server import models
from chat_server.app import create_app
from chat_server.streams import fanout
from tests.sse import check_event

JSON = {"Accept": "application/json"}


def poll(person, last_event_id=None) -> dict:
    params = {} if last_event_id is None else {"last_event_id": last_event_id}
    response = person.client.get("/api/events", params=params, headers=JSON)
    assert response.status_code == 200, response.text
    body = response.json()
    for event in body["events"]:
        check_event(event["type"], event["data"])
    return body


def kinds(body) -> list[tuple[str, int | None]]:
    return [(event["type"], event["data"].get("chat_id")) for event in body["events"]]


def test_get_events_json_without_an_id_starts_at_the_newest_event(alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "old news")
    body = poll(alice)
    assert body["events"] == []
    assert body["last_event_id"] == poll(alice, 0)["events"][-1]["id"]


def test_get_events_json_replays_only_the_chats_you_are_in(alice, bob, make_user, make_chat, send):
    carol = make_user("carol")
    start = poll(carol)["last_event_id"]
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "hi bob")
    assert poll(carol, start)["events"] == []
    body = poll(bob, start)
    assert kinds(body) == [("member.added", chat_id), ("message.created", chat_id)]
    assert body["events"][1]["data"]["message"]["id"] == message_id
    assert body["last_event_id"] == body["events"][-1]["id"]


def test_get_events_json_replay_starts_at_the_join_and_stops_at_the_leave(alice, bob, make_chat, send):
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice)
    send(alice, chat_id, "before bob joined")
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}).status_code == 201
    during = send(alice, chat_id, "while bob is in")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    send(alice, chat_id, "after bob left")
    alice.client.put(f"/api/chats/{chat_id}", data={"title": "after bob left"})
    body = poll(bob, start)
    assert kinds(body) == [("member.added", chat_id), ("message.created", chat_id), ("member.left", chat_id)]
    assert body["events"][1]["data"]["message"]["id"] == during


def test_get_events_json_rejoining_replays_both_stays_only(alice, bob, make_chat, send):
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice, members=(bob,))
    first = send(alice, chat_id, "first stay")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    send(alice, chat_id, "between stays")
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}).status_code == 201
    second = send(alice, chat_id, "second stay")
    messages = [e["data"]["message"]["id"] for e in poll(bob, start)["events"] if e["type"] == "message.created"]
    assert messages == [first, second]


def test_get_events_json_each_change_has_its_event(alice, bob, make_chat, send):
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "short-lived")
    alice.client.put(f"/api/chats/{chat_id}", data={"title": "renamed"})
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": message_id}).status_code == 200
    data = {event["type"]: event["data"] for event in poll(bob, start)["events"]}
    assert data["chat.renamed"] == {"chat_id": chat_id, "title": "renamed"}
    assert data["message.deleted"] == {"chat_id": chat_id, "message_id": message_id}
    assert data["member.added"] == {"chat_id": chat_id, "user": {"id": bob.id, "name": "bob"}}


def test_get_events_json_creating_a_chat_tells_the_creator(alice):
    start = poll(alice)["last_event_id"]
    chat_id = alice.client.post("/api/chats", data={"title": "mine"}).json()["id"]
    assert poll(alice, start)["events"][0]["data"] == {"chat_id": chat_id, "user": {"id": alice.id, "name": "alice"}}


def test_get_events_json_unknown_id_gets_reset(alice):
    body = poll(alice, 10**12)
    assert [event["type"] for event in body["events"]] == ["reset"]
    assert body["last_event_id"] == body["events"][0]["data"]["last_event_id"]


def test_get_events_json_id_older_than_the_kept_events_gets_reset(app, alice, make_chat, send):
    start = poll(alice)["last_event_id"]
    chat_id = make_chat(alice)
    send(alice, chat_id, "soon pruned")
    with models.db.connection_context():
        models.Event.prune(models.utcnow() + datetime.timedelta(seconds=1))
        assert models.Event.select().count() == 0
    assert [event["type"] for event in poll(alice, start)["events"]] == ["reset"]
    newest = poll(alice)["last_event_id"]
    assert poll(alice, newest)["events"] == [], "an id at the head of a pruned log is still good"


def test_event_prune_keeps_what_is_inside_the_window(app, alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "kept")
    with models.db.connection_context():
        before = models.Event.select().count()
        models.Event.prune(models.utcnow() - datetime.timedelta(days=7))
        assert models.Event.select().count() == before
        assert models.Event.pruned_through() == 0


def test_get_events_json_returns_at_most_1000_and_the_id_to_go_on_from(app, alice, make_chat):
    chat_id = make_chat(alice)
    start = poll(alice)["last_event_id"]
    with models.db.connection_context():
        for n in range(1_005):
            models.Message.send(chat_id, alice.id, f"bulk {n}")
    first = poll(alice, start)
    assert len(first["events"]) == 1_000 and first["last_event_id"] == first["events"][-1]["id"]
    assert len(poll(alice, first["last_event_id"])["events"]) == 5


def test_get_events_timeout_over_30_is_rejected(alice):
    response = alice.client.get("/api/events", params={"timeout": 31}, headers=JSON)
    assert response.status_code == 400


def test_get_events_needs_a_session(client):
    assert client.get("/api/events", headers=JSON).status_code == 401


@pytest.mark.parametrize("header", ["abc", "-1", "1" * 20])
def test_get_events_malformed_last_event_id_header_is_400(alice, header):
    response = alice.client.get("/api/events", headers={**JSON, "Last-Event-ID": header})
    assert response.status_code == 400


# PostgreSQL: sequence ids are taken before commit, so without care they become visible out of order.


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_event_ids_become_visible_in_id_order_on_postgresql(app, alice, make_chat):
    chats = [make_chat(alice, f"chat {n}") for n in range(8)]
    stop = threading.Event()
    seen: set[int] = set()

    def write(chat_id):
        with models.db.connection_context():
            while not stop.is_set():
                models.Message.send(chat_id, alice.id, "racing")

    def read():
        newest = 0
        with models.db.connection_context():
            while not stop.is_set():
                for row in models.Event.newer_than(newest, 1_000):
                    seen.add(row[0])
                    newest = row[0]

    threads = [threading.Thread(target=write, args=(chat_id,)) for chat_id in chats] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join()
    with models.db.connection_context():
        committed = [row[0] for row in models.Event.newer_than(0, 1_000_000) if row[0] <= max(seen)]
    assert len(committed) > 100, "the writers raced"
    # A reader reads by id: an id below one it has seen that was not there yet is one it never gets.
    assert [event_id for event_id in committed if event_id not in seen] == []


# Streams on a real uvicorn in this process, so the broker's bookkeeping can be looked at.


@pytest.fixture
def uvicorn_server(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")
    app = create_app(f"sqlite:///{tmp_path / 'streams.db'}", password_profile="cheapest")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/api"
    server.should_exit = True
    thread.join(10)
    models.db.close_all()


def test_get_events_dropped_streams_free_their_subscribers_at_once(uvicorn_server):
    users = []
    with httpx.Client(base_url=uvicorn_server, timeout=10) as setup:
        for n in range(5):
            form = {"name": f"dropper{n}", "password": "long enough", "email": "d@example.com"}
            users.append(dict(setup.post("/user/0", data=form).raise_for_status().cookies))

    async def open_and_drop(cookies):
        async with (
            httpx.AsyncClient(base_url=uvicorn_server, cookies=cookies, timeout=10) as client,
            client.stream("GET", "/events") as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: ready"):
                    return

    async def many_rounds():
        for _ in range(4):  # 20 streams a round: 4 per user, under the default cap of 20
            await asyncio.gather(*(open_and_drop(cookies) for cookies in users for _ in range(4)))

    asyncio.run(many_rounds())
    deadline = time.monotonic() + 5
    while fanout.broker.subscriber_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fanout.broker.subscriber_count == 0
    assert not fanout.broker.per_user
