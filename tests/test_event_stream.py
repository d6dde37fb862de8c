"""GET /api/events as a stream, against real chat-server processes: who gets what, resuming without loss, and how
streams end. Every event received is checked against its schema in openapi/chat.yaml (tests/sse.py)."""

import itertools
import os
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import fresh_postgres
from tests.live_server import live_server
from tests.sse import Stream, check_event

_names = itertools.count(1)
# Short heartbeats so that a test sees one; registrations from 127.0.0.1, and consent to be added, are not what
# these tests are about: everyone may add everyone, unless they say otherwise (who_can_add_me).
OPTIONS = (
    "--register-rate",
    "off",
    "--event-heartbeat",
    "0.5",
    "--max-streams-per-user",
    "3",
    "--default-who-can-add-me",
    "anyone",
)


@dataclass
class Member:
    id: int
    name: str
    client: httpx.Client
    api_url: str

    @property
    def cookies(self) -> dict:
        return dict(self.client.cookies)

    def stream(self, last_event_id: int | None = None, query: str = "") -> Stream:
        return Stream(self.api_url, self.cookies, last_event_id, query)

    def send(self, chat_id: int, content: str) -> int:
        response = self.client.post(f"/chats/{chat_id}", data={"content": content})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def new_chat(self, *members: "Member") -> int:
        chat_id = self.client.post("/chats", data={"title": f"chat of {self.name}"}).json()["id"]
        for member in members:
            self.add(chat_id, member)
        return chat_id

    def add(self, chat_id: int, member: "Member") -> None:
        assert self.client.post(f"/chats/{chat_id}/members", data={"user_id": member.id}).status_code == 201


def register(api_url: str, clients: list, fresh_connections: bool = False) -> Member:
    name = f"streamer{next(_names)}-{os.getpid()}"
    # Without keep-alive, every request is a new connection: with --workers 2 each one may land on either worker.
    limits = httpx.Limits(max_keepalive_connections=0) if fresh_connections else httpx.Limits()
    client = httpx.Client(base_url=api_url, timeout=10, limits=limits)
    clients.append(client)
    response = client.post("/user/0", data={"name": name, "password": "long enough", "email": f"{name}@example.com"})
    assert response.status_code == 201, response.text
    return Member(response.json()["id"], name, client, api_url)


@pytest.fixture(scope="module")
def server():
    with live_server(*OPTIONS) as running:
        yield running


@pytest.fixture
def clients():
    """HTTP clients a test opened, closed after it."""
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def people(server, clients):
    def make(count: int) -> list[Member]:
        return [register(server.api_url, clients) for _ in range(count)]

    return make


def second_device(server, member: Member, clients: list) -> Member:
    """The same user logged in again: another session."""
    client = httpx.Client(base_url=server.api_url, timeout=10)
    clients.append(client)
    assert client.post("/login", data={"name": member.name, "password": "long enough"}).status_code == 200
    return Member(member.id, member.name, client, server.api_url)


def message_ids(events) -> list[int]:
    return [event.data["message"]["id"] for event in events if event.kind == "message.created"]


def test_get_events_stream_opens_with_retry_headers_and_ready(people, server):
    (alice,) = people(1)
    with alice.stream() as stream:
        ready = stream.ready()
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-store"
        assert stream.response.headers["x-accel-buffering"] == "no"
        assert stream.retry == 3000
        assert ready.id == ready.data["last_event_id"]
        time.sleep(1.2)
        assert stream.comments, "a heartbeat comment every 0.5 s"


def test_get_events_message_reaches_every_member_and_no_one_else(people):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob)
    carols_chat = carol.new_chat()
    with alice.stream() as to_alice, bob.stream() as to_bob, carol.stream() as to_carol:
        for stream in (to_alice, to_bob, to_carol):
            stream.ready()
        sent = alice.send(chat_id, "hello")
        carols_own = carol.send(carols_chat, "only mine")
        for stream in (to_alice, to_bob):
            event = stream.next_of("message.created")
            assert event.data == {"chat_id": chat_id, "message": event.data["message"]}
            assert event.data["message"]["id"] == sent and event.data["message"]["content"] == "hello"
        # Events arrive in id order, so carol's first message event being her own means she never got alice's.
        assert message_ids([to_carol.next_of("message.created")]) == [carols_own]


def test_get_events_member_added_later_sees_the_join_then_new_messages_and_nothing_after_leaving(people):
    alice, bob = people(2)
    chat_id = alice.new_chat()
    alice.send(chat_id, "before bob")
    with bob.stream() as to_bob:
        to_bob.ready()
        alice.add(chat_id, bob)
        joined = to_bob.next()
        assert (joined.kind, joined.data) == (
            "member.added",
            {"chat_id": chat_id, "user": {"id": bob.id, "name": bob.name}},
        )
        after = alice.send(chat_id, "after bob")
        assert message_ids([to_bob.next()]) == [after]
        assert bob.client.delete("/chats", params={"chat_id": chat_id}).status_code == 200
        left = to_bob.next()
        assert (left.kind, left.data) == ("member.left", {"chat_id": chat_id, "user_id": bob.id})
        alice.send(chat_id, "bob is gone")
        alice.client.put(f"/chats/{chat_id}", data={"title": "without bob"})
        bobs_own = bob.new_chat()
        assert to_bob.next().data == {"chat_id": bobs_own, "user": {"id": bob.id, "name": bob.name}}
        assert to_bob.drain() == []


def test_get_events_chat_invited_reaches_the_invitee_only_and_accepting_joins(people):
    alice, bob, carol = people(3)
    assert bob.client.put(f"/user/{bob.id}", data={"who_can_add_me": "nobody"}).status_code == 200
    chat_id = alice.new_chat(carol)
    with bob.stream() as to_bob, carol.stream() as to_carol:
        to_bob.ready()
        to_carol.ready()
        invited = alice.client.post(f"/chats/{chat_id}/members", data={"user_id": bob.id})
        assert invited.status_code == 202
        event = to_bob.next()
        assert event.kind == "chat.invited"
        assert event.data["invitation"]["id"] == invited.json()["id"]
        assert event.data["invitation"]["inviter"] == {"id": alice.id, "name": alice.name}
        sent = alice.send(chat_id, "bob is not in yet")
        assert message_ids([to_carol.next()]) == [sent], "a member of the chat is not told who was invited"
        assert bob.client.post(f"/invitations/{invited.json()['id']}").status_code == 200
        assert to_bob.next().data == {"chat_id": chat_id, "user": {"id": bob.id, "name": bob.name}}
        assert to_carol.next().kind == "member.added"


def test_get_events_resume_after_50_missed_messages_gets_exactly_those(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    with bob.stream() as to_bob:
        last = to_bob.ready().id
    missed = [alice.send(chat_id, f"missed {n}") for n in range(50)]
    with bob.stream(last_event_id=last) as to_bob:
        replayed = to_bob.replayed()
        assert message_ids(replayed) == missed
        assert [event.id for event in replayed] == sorted(event.id for event in replayed)
        live = alice.send(chat_id, "live again")
        assert message_ids([to_bob.next()]) == [live]


def test_get_events_query_parameter_resumes_and_the_header_wins(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    first = alice.send(chat_id, "one")
    with bob.stream() as to_bob:
        to_bob.ready()
        second = alice.send(chat_id, "two")
        after_first = to_bob.next().id
    with bob.stream(query="?last_event_id=0") as to_bob:
        assert message_ids([to_bob.next_of("message.created")]) == [first]
    with bob.stream(last_event_id=after_first - 1, query="?last_event_id=0") as to_bob:
        assert message_ids([to_bob.next_of("message.created")]) == [second]


def test_get_events_unknown_last_event_id_gets_reset_then_live(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    with bob.stream(last_event_id=10**15) as to_bob:
        reset = to_bob.next()
        assert reset.kind == "reset" and reset.id == reset.data["last_event_id"]
        assert to_bob.next().kind == "ready"
        sent = alice.send(chat_id, "after the reset")
        assert message_ids([to_bob.next()]) == [sent]


def test_get_events_chat_read_reaches_the_readers_other_sessions_only(people, server, clients):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    message_id = alice.send(chat_id, "read me")
    on_device = second_device(server, bob, clients)
    with bob.stream() as reader, on_device.stream() as second, alice.stream() as sender:
        for stream in (reader, second, sender):
            stream.ready()
        response = bob.client.post(f"/chats/{chat_id}/read", data={"message_id": message_id})
        assert response.json() == {"status": "ok", "last_read_id": message_id}
        read = second.next()
        assert (read.kind, read.data) == ("chat.read", {"chat_id": chat_id, "last_read_id": message_id})
        marker = alice.send(chat_id, "marker")  # the next event everyone gets
        assert message_ids([reader.next()]) == [marker]
        assert message_ids([sender.next()]) == [marker]


def test_logout_ends_that_sessions_streams_within_2_seconds(people, server, clients):
    (alice,) = people(1)
    with alice.stream() as ending, second_device(server, alice, clients).stream() as staying:
        ending.ready()
        staying.ready()
        started = time.monotonic()
        assert alice.client.get("/logout").status_code == 200
        assert ending.ended.wait(2), "the logged-out session's stream is still open"
        assert time.monotonic() - started < 2
        assert not staying.ended.is_set()


def test_delete_user_ends_all_of_that_users_streams(people, server, clients):
    (alice,) = people(1)
    with alice.stream() as first, second_device(server, alice, clients).stream() as second:
        first.ready()
        second.ready()
        assert alice.client.delete(f"/user/{alice.id}").status_code == 200
        assert first.ended.wait(2) and second.ended.wait(2)


def test_delete_user_tells_the_others_in_their_chats(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    with alice.stream() as to_alice:
        to_alice.ready()
        assert bob.client.delete(f"/user/{bob.id}").status_code == 200
        left = to_alice.next()
        assert (left.kind, left.data) == ("member.left", {"chat_id": chat_id, "user_id": bob.id})


def test_get_events_over_the_per_user_cap_gets_429(people):
    (alice,) = people(1)
    streams = [alice.stream() for _ in range(3)]  # OPTIONS: --max-streams-per-user 3
    try:
        for stream in streams:
            stream.ready()
        response = alice.client.get("/events", headers={"Accept": "text/event-stream"})
        assert response.status_code == 429
        assert "error" in response.json() and response.headers["retry-after"]
    finally:
        for stream in streams:
            stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server notices the closed streams on its own schedule
        with alice.stream() as again:
            if again.response.status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail("closed streams still count against the cap")


def test_get_events_json_long_poll_answers_when_an_event_arrives(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    head = bob.client.get("/events", headers={"Accept": "application/json"}).json()["last_event_id"]
    answer = {}

    def poll():
        answer["response"] = bob.client.get(
            "/events", params={"last_event_id": head, "timeout": 20}, headers={"Accept": "application/json"}
        )

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    sent = alice.send(chat_id, "wake up")
    poller.join(15)
    assert not poller.is_alive(), "the long poll did not answer when the event arrived"
    body = answer["response"].json()
    assert [event["data"]["message"]["id"] for event in body["events"]] == [sent]
    assert body["last_event_id"] == body["events"][-1]["id"]
    for event in body["events"]:
        check_event(event["type"], event["data"])


def test_get_events_json_long_poll_times_out_empty(people):
    (alice,) = people(1)
    started = time.monotonic()
    body = alice.client.get("/events", params={"timeout": 1}, headers={"Accept": "application/json"}).json()
    assert body["events"] == [] and time.monotonic() - started >= 1


# PostgreSQL: several processes over one database, each with its LISTEN connection.


def live_then_resumed(sender: Member, reader: Member, chat_id: int, live_count: int) -> None:
    """The reader's stream gets the sender's messages live; after it drops and misses 50, exactly those 50."""
    with reader.stream() as to_reader:
        to_reader.ready()
        live = [sender.send(chat_id, f"live {n}") for n in range(live_count)]
        received = [to_reader.next() for _ in live]
        assert message_ids(received) == live
    missed = [sender.send(chat_id, f"missed {n}") for n in range(50)]
    with reader.stream(last_event_id=received[-1].id) as to_reader:
        assert message_ids(to_reader.replayed()) == missed


@pytest.mark.postgres
def test_get_events_across_two_hosts_on_postgresql_live_and_resumed(clients):
    postgres_url = fresh_postgres()
    with (
        live_server(*OPTIONS, "--database", postgres_url) as host_a,
        live_server(*OPTIONS, "--database", postgres_url) as host_b,
    ):
        sender, reader = register(host_a.api_url, clients), register(host_a.api_url, clients)
        chat_id = sender.new_chat(reader)
        live_then_resumed(sender, Member(reader.id, reader.name, reader.client, host_b.api_url), chat_id, 10)


@pytest.mark.postgres
def test_get_events_resume_with_two_workers_on_postgresql(clients):
    with live_server(*OPTIONS, "--database", fresh_postgres(), "--workers", "2") as server:
        # A new connection per send: with two workers, the sends land on both, so some on the other one.
        sender = register(server.api_url, clients, fresh_connections=True)
        reader = register(server.api_url, clients)
        live_then_resumed(sender, reader, sender.new_chat(reader), 20)


def test_get_events_events_older_than_the_retention_are_pruned_in_the_background(clients):
    with live_server("--register-rate", "off", "--event-retention", "1s") as short_memory:
        alice = register(short_memory.api_url, clients)
        chat_id = alice.new_chat()
        alice.send(chat_id, "soon forgotten")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the pruner runs every second with a 1 s retention
            body = alice.client.get("/events", params={"last_event_id": 0}, headers={"Accept": "application/json"})
            if [event["type"] for event in body.json()["events"]] == ["reset"]:
                return
            time.sleep(0.2)
        pytest.fail("events older than the retention window were not pruned")
