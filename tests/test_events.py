"""GET /api/events in its JSON form, the event log under it (who sees what, pruning, commit order), and streams
freeing their place as soon as clients go. Streams themselves are read from live servers in test_event_stream.py."""

import asyncio
import contextlib
import datetime
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from chat_server import models
from chat_server.app import create_app
from chat_server.storage.queries import PLAIN, new_message_json
from chat_server.streams import fanout
from tests.conftest import fresh_postgres, join
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
    body = poll(bob, start)  # a stranger to alice: invited first, and the invitation is replayed too
    assert kinds(body) == [("chat.invited", None), ("member.added", chat_id), ("message.created", chat_id)]
    assert body["events"][2]["data"]["message"]["id"] == message_id
    assert body["last_event_id"] == body["events"][-1]["id"]


def test_get_events_json_replay_starts_at_the_join_and_stops_at_the_leave(alice, bob, make_chat, send):
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice)
    send(alice, chat_id, "before bob joined")
    join(alice, chat_id, bob)
    during = send(alice, chat_id, "while bob is in")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    send(alice, chat_id, "after bob left")
    alice.client.put(f"/api/chats/{chat_id}", data={"title": "after bob left"})
    body = poll(bob, start)
    assert kinds(body) == [
        ("chat.invited", None),
        ("member.added", chat_id),
        ("message.created", chat_id),
        ("member.left", chat_id),
    ]
    assert body["events"][2]["data"]["message"]["id"] == during


def test_get_events_json_rejoining_replays_both_stays_only(alice, bob, make_chat, send):
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice, members=(bob,))
    first = send(alice, chat_id, "first stay")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    send(alice, chat_id, "between stays")
    join(alice, chat_id, bob)
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


def test_get_events_json_each_conversation_change_has_its_event(alice, bob, make_user, make_chat, send):
    """Reactions, a thread reply that mentions bob, and a pin, each as its event; poll() checks every one against
    its schema. carol, in no chat of theirs, gets none of them."""
    carol = make_user("carol")
    start = poll(bob)["last_event_id"]
    chat_id = make_chat(alice, members=(bob,))
    root = send(alice, chat_id, "the root")
    reaction = f"/api/chats/{chat_id}/messages/{root}/reactions/\N{THUMBS UP SIGN}"
    assert alice.client.put(reaction).status_code == 200
    assert alice.client.delete(reaction).status_code == 200
    reply = alice.client.post(f"/api/chats/{chat_id}", data={"content": "@bob look", "thread_root_id": root})
    assert reply.status_code == 201, reply.text
    assert alice.client.put(f"/api/chats/{chat_id}/pins/{root}").status_code == 200
    assert alice.client.delete(f"/api/chats/{chat_id}/pins/{root}").status_code == 200

    events = poll(bob, start)["events"]

    assert [event["type"] for event in events][3:] == [
        "reaction.added", "reaction.removed", "message.created", "thread.updated", "mention", "message.pinned",
        "message.unpinned",
    ]  # fmt: skip
    added, removed, created, updated, mention, pinned, unpinned = (event["data"] for event in events[3:])
    reacted = {"chat_id": chat_id, "message_id": root, "emoji": "\N{THUMBS UP SIGN}", "user_id": alice.id}
    assert added == removed == reacted
    assert created["message"]["thread_root_id"] == root and created["message"]["mentions"] == [bob.id]
    assert (updated["message_id"], updated["thread"]["reply_count"]) == (root, 1)
    assert mention == {"chat_id": chat_id, "message_id": reply.json()["id"]}
    assert pinned == unpinned == {"chat_id": chat_id, "message_id": root, "user_id": alice.id}
    assert poll(carol, start)["events"] == []


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


@contextlib.contextmanager
def serving(app):
    """The app on a real uvicorn in a thread of this process; yields its port. The models are closed after. The
    socket is bound here and handed to uvicorn, so no other process (another xdist worker's) can take the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        models.db.close_all()


@pytest.fixture
def uvicorn_server(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")
    with serving(create_app(f"sqlite:///{tmp_path / 'streams.db'}", password_profile="cheapest")) as port:
        yield f"http://127.0.0.1:{port}/api"


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


def test_get_events_json_chat_invited_reaches_only_the_invitee_while_polling(app, alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(carol,))
    starts = {person.name: poll(person)["last_event_id"] for person in (bob, carol)}
    answers = {}

    def wait(person):
        params = {"last_event_id": starts[person.name], "timeout": 5}
        answers[person.name] = person.client.get("/api/events", params=params, headers=JSON).json()

    waiting = threading.Thread(target=wait, args=(bob,))
    waiting.start()
    time.sleep(0.5)
    invited = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id})
    waiting.join(10)

    assert invited.status_code == 202
    (event,) = answers["bob"]["events"]
    check_event(event["type"], event["data"])
    assert event["type"] == "chat.invited"
    assert event["data"]["invitation"] == bob.client.get("/api/invitations").json()["invitations"][0]
    assert poll(carol, starts["carol"])["events"] == []


# Replays with a bounded cost, off the event loop (issue 22).


def seed_events(chat_id: int, count: int) -> None:
    """`count` message.created events in the chat's log, written directly: a long history in seconds."""
    message = new_message_json(1, "x", 1, datetime.datetime(2026, 1, 1), None, PLAIN)  # as a send records it
    data = json.dumps({"chat_id": chat_id, "message": message})
    rows = [{"kind": models.MESSAGE_CREATED, "chat_id": chat_id, "data": data, "time": models.utcnow()}] * count
    with models.db.connection_context(), models.db.atomic():
        for first in range(0, count, 5_000):
            models.Event.insert_many(rows[first : first + 5_000]).execute()
    if not models.queries_are_local():  # as autovacuum would, soon after so many rows: the planner's statistics
        models.db.execute_sql("ANALYZE event")


@pytest.fixture
def rows_read(monkeypatch):
    """Every row Event.replay hands back, and whether any call ran on the event loop's thread."""
    read = {"rows": 0, "on_the_loop": False}
    replay = models.Event.replay.__func__

    def counting(cls, *args):
        try:
            asyncio.get_running_loop()
            read["on_the_loop"] = True
        except RuntimeError:
            pass
        rows = replay(cls, *args)
        read["rows"] += len(rows)
        return rows

    monkeypatch.setattr(models.Event, "replay", classmethod(counting))
    return read


@pytest.mark.parametrize("history", [2_000, 20_000])
def test_get_events_json_late_joiner_from_zero_reads_from_the_join_not_the_history(
    alice, bob, make_chat, send, rows_read, history
):
    chat_id = make_chat(alice)
    seed_events(chat_id, history)
    join(alice, chat_id, bob)  # invited, as a stranger, and accepting
    send(alice, chat_id, "welcome")
    body = poll(bob, 0)
    assert kinds(body) == [("chat.invited", None), ("member.added", chat_id), ("message.created", chat_id)]
    assert body["last_event_id"] == body["events"][-1]["id"]
    assert rows_read["rows"] == 3  # the invitation, the join and the message: nothing of the history before
    assert not rows_read["on_the_loop"]


def test_get_events_json_member_far_behind_goes_on_in_bounded_steps(alice, make_chat, rows_read):
    chat_id = make_chat(alice)
    start = poll(alice)["last_event_id"]
    seed_events(chat_id, 2_500)
    first = poll(alice, start)
    assert len(first["events"]) == 1_000 and first["last_event_id"] == first["events"][-1]["id"]
    assert rows_read["rows"] <= 1_000  # two pages of REPLAY_ROWS
    second = poll(alice, first["last_event_id"])
    assert second["events"][0]["id"] == first["last_event_id"] + 1
    assert not rows_read["on_the_loop"]


def test_get_events_json_poll_reads_at_most_the_budget_of_rows_it_may_not_see(app, alice, make_chat, monkeypatch):
    """Rows the client may not see (its own session's read markers) still count: a poll reads at most
    MAX_REPLAY_ROWS and answers the id it read up to, below the newest, so the client goes on from there."""
    monkeypatch.setattr(fanout, "MAX_REPLAY_ROWS", 1_000)
    chat_id = make_chat(alice)
    start = poll(alice)["last_event_id"]
    session = models.Session.get(models.Session.user == alice.id).id
    data = json.dumps({"chat_id": chat_id, "last_read_id": 1})
    with models.db.connection_context(), models.db.atomic():
        row = {"kind": models.CHAT_READ, "chat_id": chat_id, "user_id": alice.id, "session_id": session}
        models.Event.insert_many([{**row, "data": data, "time": models.utcnow()}] * 1_500).execute()
    head = models.Event.head()
    first = poll(alice, start)
    assert first["events"] == [] and start < first["last_event_id"] < head
    assert poll(alice, first["last_event_id"]) == {"events": [], "last_event_id": head}


def test_get_events_stream_far_behind_gets_the_budget_then_reset_then_live(uvicorn_server, monkeypatch):
    monkeypatch.setattr(fanout, "MAX_REPLAY_ROWS", 1_000)
    form = {"name": "faraway", "password": "long enough", "email": "f@example.com"}
    with httpx.Client(base_url=uvicorn_server, timeout=10) as client:
        assert client.post("/user/0", data=form).status_code == 201
        chat_id = client.post("/chats", data={"title": "busy"}).json()["id"]
        start = client.get("/events", headers=JSON).json()["last_event_id"]
        seed_events(chat_id, 1_200)
        seen = []
        with client.stream("GET", "/events", headers={"Last-Event-ID": str(start)}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    seen.append(line.removeprefix("event: "))
                    if seen[-1] == "ready":
                        break
    assert seen.count("message.created") == 1_000
    assert seen[-2:] == ["reset", "ready"]


def test_get_events_json_polls_hold_a_stream_slot_and_free_it_when_the_client_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAT_MAX_STREAMS_PER_USER", "1")
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")
    app = create_app(f"sqlite:///{tmp_path / 'polls.db'}", password_profile="cheapest")
    with serving(app) as port:
        base = f"http://127.0.0.1:{port}/api"
        form = {"name": "poller", "password": "long enough", "email": "p@example.com"}
        cookies = dict(httpx.post(f"{base}/user/0", data=form).raise_for_status().cookies)
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(
            f"GET /api/events?timeout=30 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode()
        )
        deadline = time.monotonic() + 10
        while not fanout.broker.per_user and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=base, cookies=cookies, headers=JSON, timeout=10) as client:
            assert client.get("/events").status_code == 429  # the long poll holds the one slot
            held.close()
            deadline = time.monotonic() + 10
            while fanout.broker.per_user and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not fanout.broker.per_user  # given back when the client went, not after its 30 s
            assert client.get("/events").status_code == 200


@pytest.mark.parametrize("history", [20_000, 200_000])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_get_events_resumes_from_zero_past_a_long_history_leave_others_answering(
    tmp_path, monkeypatch, backend, history
):
    """A late joiner's poll and a member's stream, both from id 0 in a chat of `history` events, run off the event
    loop and read a bounded number of rows; meanwhile another user's health checks and sends keep answering. The
    latencies are printed (`-rP`), for BENCHMARKS.md; the test asserts what was answered."""
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")
    url = f"sqlite:///{tmp_path / 'history.db'}" if backend == "sqlite" else fresh_postgres()
    app = create_app(url, password_profile="cheapest")
    clients = {}
    with serving(app) as port, contextlib.ExitStack() as closing:
        for name in ("alice", "carol", "dave"):
            clients[name] = client = closing.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=60)
            )
            form = {"name": name, "password": "long enough", "email": f"{name}@example.com"}
            assert client.post("/user/0", data=form).status_code == 201
        alice, carol, dave = clients["alice"], clients["carol"], clients["dave"]
        chat_id = alice.post("/chats", data={"title": "busy"}).json()["id"]
        own_chat = dave.post("/chats", data={"title": "dave's"}).json()["id"]
        seed_events(chat_id, history)
        invited = alice.post(f"/chats/{chat_id}/members", data={"name": "carol"})
        assert invited.status_code == 202, invited.text
        assert carol.post(f"/invitations/{invited.json()['id']}").status_code == 200
        results = {}

        def late_joiner_polls():
            started = time.perf_counter()
            results["poll"] = carol.get("/events", params={"last_event_id": 0}, headers=JSON)
            results["poll_seconds"] = time.perf_counter() - started

        def member_resumes():
            started, seen = time.perf_counter(), []
            with alice.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        seen.append(line.removeprefix("event: "))
                        if seen[-1] == "ready":
                            break
            results["stream"], results["stream_seconds"] = seen, time.perf_counter() - started

        readers = [threading.Thread(target=work) for work in (late_joiner_polls, member_resumes)]
        for reader in readers:
            reader.start()
        health, sends = [], []
        while any(reader.is_alive() for reader in readers):
            started = time.perf_counter()
            assert dave.get("/health").status_code == 200
            health.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert dave.post(f"/chats/{own_chat}", data={"content": "still here"}).status_code == 201
            sends.append(time.perf_counter() - started)
        for reader in readers:
            reader.join()
        assert results["poll"].status_code == 200
        assert [event["type"] for event in results["poll"].json()["events"]][:2] == ["chat.invited", "member.added"]
        stream = results["stream"]
        assert stream[-2:] == ["reset", "ready"] and stream.count("message.created") == fanout.MAX_REPLAY_ROWS - 1
        print(
            f"{backend}, {history:,} events: late joiner's poll {results['poll_seconds'] * 1000:.0f} ms, member's "
            f"resume to ready {results['stream_seconds'] * 1000:.0f} ms; meanwhile {len(health)} health checks, max "
            f"{max(health) * 1000:.1f} ms, and {len(sends)} sends, max {max(sends) * 1000:.1f} ms"
        )
