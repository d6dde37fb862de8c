"""Races in issue 24's conversation features, against a real chat-server: on SQLite one process with its threads, on
PostgreSQL two worker processes. Direct chats opened from both sides at once, bursts of one reaction, pins racing past
the cap, and reactions, pins and thread follows racing the deletion of what they point at (each answered 200 or 404,
never a 500 or a 409). Every answer is checked against openapi/chat.yaml, and what the races leave behind is read from
the database itself.

The harness here (a server per backend, people, requests released together) serves tests/test_conversation_events.py
too."""

import contextlib
import itertools
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from playhouse.db_url import connect

from tests.conftest import assert_matches_spec, fresh_postgres
from tests.live_server import LiveServer, live_server
from tests.sse import Stream

OPTIONS = (
    # Everyone here registers from 127.0.0.1 and may add, or open a direct chat with, anyone: consent is tested in
    # tests/test_conversations.py.
    *("--register-rate", "off", "--default-who-can-add-me", "anyone"),
    # Bursts of up to 55 requests from one address, each on a connection of its own.
    *("--max-connections-per-address", "500"),
    # A closed stream's reading thread wakes at the next heartbeat to notice; 15 s by default.
    *("--event-heartbeat", "0.5"),
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
ROUNDS = 10
THUMBS = "👍"
ROCKET = "🚀"
TIMEOUT_SECONDS = 30

_names = itertools.count(1)


@dataclass(frozen=True)
class Backend:
    """A running chat-server and the database it serves, which the tests read directly."""

    server: LiveServer
    database_url: str

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def rows(self, query: str, *params) -> list[tuple]:
        """The rows of a query written with `?` for its parameters, on a connection of its own."""
        database = connect(self.database_url)
        try:
            return list(database.execute_sql(query.replace("?", database.param), params).fetchall())
        finally:
            database.close()


@contextlib.contextmanager
def running(kind: str, *options: str) -> Iterator[Backend]:
    """chat-server on a fresh SQLite file (one process), or on the fresh test PostgreSQL database with two workers;
    with OPTIONS and these."""
    if kind == "sqlite":
        with live_server(*OPTIONS, *options) as server:
            yield Backend(server, f"sqlite:///{server.database_path}")
        return
    database_url = fresh_postgres()
    with live_server(*OPTIONS, *options, "--database", database_url, "--workers", "2") as server:
        yield Backend(server, database_url)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    with running(request.param) as started:
        yield started


def new_client(api_url: str, cookies: dict | None = None, keep_alive: bool = False) -> httpx.Client:
    """A client whose every answer must match the spec. Without keep-alive each request opens a connection, which
    with two workers either of them may accept."""
    limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(
        base_url=api_url,
        cookies=cookies,
        timeout=TIMEOUT_SECONDS,
        limits=limits,
        event_hooks={"response": [assert_matches_spec]},
    )


@dataclass
class Person:
    id: int
    name: str
    client: httpx.Client
    api_url: str

    @property
    def cookies(self) -> dict:
        return dict(self.client.cookies)

    def stream(self, last_event_id: int | None = None) -> Stream:
        return Stream(self.api_url, self.cookies, last_event_id)

    def new_chat(self, *members: "Person") -> int:
        created = self.client.post("/chats", data={"title": f"chat of {self.name}"})
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        for member in members:
            added = self.client.post(f"/chats/{chat_id}/members", data={"user_id": member.id})
            assert added.status_code == 201, added.text
        return chat_id

    def send(self, chat_id: int, content: str, **fields) -> int:
        sent = self.client.post(f"/chats/{chat_id}", data={"content": content, **fields})
        assert sent.status_code == 201, sent.text
        return sent.json()["id"]

    def events_after(self, event_id: int) -> list[dict]:
        """The events this user may see after `event_id`, from the log (a JSON poll), each checked by the hook."""
        polled = self.client.get("/events", params={"last_event_id": event_id}, headers={"Accept": "application/json"})
        assert polled.status_code == 200, polled.text
        return polled.json()["events"]

    def last_event_id(self) -> int:
        return self.client.get("/events", headers={"Accept": "application/json"}).json()["last_event_id"]


@contextlib.contextmanager
def registering(backend: Backend) -> Iterator[Callable[[int], list[Person]]]:
    """A function that registers people on the backend's server; their clients are closed afterwards."""
    clients: list[httpx.Client] = []

    def make(count: int) -> list[Person]:
        made = []
        for _ in range(count):
            name = f"racer{next(_names)}-{os.getpid()}"
            client = new_client(backend.api_url)
            clients.append(client)
            registered = client.post(
                "/user/0", data={"name": name, "password": "long enough", "email": f"{name}@example.com"}
            )
            assert registered.status_code == 201, registered.text
            made.append(Person(registered.json()["id"], name, client, backend.api_url))
        return made

    try:
        yield make
    finally:
        for client in clients:
            client.close()


def at_once(*requests: tuple) -> list[httpx.Response]:
    """Send each (person, method, path) or (person, method, path, form) from a thread of its own, all released
    together, each on a connection it opened beforehand (with two workers, one or the other accepted it); their
    answers, in order."""
    clients = [new_client(request[0].api_url, request[0].cookies, keep_alive=True) for request in requests]
    start = threading.Barrier(len(requests))

    def run(index: int) -> httpx.Response:
        _, method, path, *form = requests[index]
        assert clients[index].get("/health").status_code == 200  # the connection, open before the start
        start.wait(TIMEOUT_SECONDS)
        return clients[index].request(method, path, data=form[0] if form else None)

    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(run, range(len(requests))))
    finally:
        for client in clients:
            client.close()


def reaction_path(chat_id: int, message_id: int, emoji: str = THUMBS) -> str:
    return f"/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(emoji)}"


def statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


def duplicate_reactions(backend: Backend) -> list[tuple]:
    return backend.rows(
        "SELECT message_id, user_id, emoji, COUNT(*) FROM reaction GROUP BY message_id, user_id, emoji "
        "HAVING COUNT(*) > 1"
    )


def orphans(backend: Backend, table: str) -> list[tuple]:
    """Rows of a table that points at messages (reaction, pin, threadfollow) whose message is gone."""
    column = "root_id" if table == "threadfollow" else "message_id"
    return backend.rows(f"SELECT id, {column} FROM {table} WHERE {column} NOT IN (SELECT id FROM message)")


def stored_counts(backend: Backend, message_id: int) -> list[dict]:
    """The message's reactions as its Reaction rows have them, in order of first use."""
    rows = backend.rows(
        "SELECT emoji, COUNT(*), MIN(id) FROM reaction WHERE message_id = ? GROUP BY emoji ORDER BY MIN(id)",
        message_id,
    )
    return [{"emoji": emoji, "count": count} for emoji, count, _ in rows]


def shown_counts(person: Person, chat_id: int, message_id: int) -> list[dict]:
    message = person.client.get(f"/chats/{chat_id}/messages/{message_id}")
    assert message.status_code == 200, message.text
    return [{"emoji": r["emoji"], "count": r["count"]} for r in message.json()["reactions"]]


# Direct chats


def test_open_direct_chat_from_both_sides_at_once_makes_one_chat(backend, people):
    for _ in range(ROUNDS):
        alice, bob = people(2)
        answers = at_once((alice, "POST", f"/direct/{bob.id}"), (bob, "POST", f"/direct/{alice.id}"))
        assert statuses(answers) == [200, 201], [a.text for a in answers]
        chat_id = answers[0].json()["id"]
        assert answers[1].json()["id"] == chat_id
        assert backend.rows(
            "SELECT chat_id FROM direct_chat WHERE low = ? AND high = ?", min(alice.id, bob.id), max(alice.id, bob.id)
        ) == [(chat_id,)]
        members = backend.rows("SELECT user_id FROM membership WHERE chat_id = ? ORDER BY user_id", chat_id)
        assert members == [(min(alice.id, bob.id),), (max(alice.id, bob.id),)]
        for person in (alice, bob):
            listed = person.client.get("/chats").json()["chats"]
            assert [(c["id"], c["kind"]) for c in listed] == [(chat_id, "direct")]
    # The loser of each race created nothing that stayed: no direct chat without its pair, none twice.
    unpaired = "SELECT id FROM chat WHERE kind = 'direct' AND id NOT IN (SELECT chat_id FROM direct_chat)"
    assert backend.rows(unpaired) == []
    assert backend.rows("SELECT low, high FROM direct_chat GROUP BY low, high HAVING COUNT(*) > 1") == []


def test_open_direct_chat_with_yourself_four_times_at_once_makes_one_chat(backend, people):
    for _ in range(ROUNDS // 2):
        (alice,) = people(1)
        answers = at_once(*[(alice, "POST", f"/direct/{alice.id}")] * 4)
        assert statuses(answers) == [200, 200, 200, 201], [a.text for a in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        chat_id = answers[0].json()["id"]
        assert backend.rows("SELECT chat_id FROM direct_chat WHERE low = ? AND high = ?", alice.id, alice.id) == [
            (chat_id,)
        ]
        assert backend.rows("SELECT user_id FROM membership WHERE chat_id = ?", chat_id) == [(alice.id,)]


# Reactions


def test_add_reaction_50_at_once_by_one_user_counts_once(backend, people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    message_id = alice.send(chat_id, "react to me")
    since = bob.last_event_id()
    answers = at_once(*[(alice, "PUT", reaction_path(chat_id, message_id))] * 50)
    assert statuses(answers) == [200] * 50
    for answer in answers:
        assert answer.json() == {"message_id": message_id, "reactions": [{"emoji": THUMBS, "count": 1, "me": True}]}
    assert backend.rows("SELECT user_id, emoji FROM reaction WHERE message_id = ?", message_id) == [(alice.id, THUMBS)]
    assert shown_counts(bob, chat_id, message_id) == [{"emoji": THUMBS, "count": 1}]
    added = [e["data"] for e in bob.events_after(since) if e["type"] == "reaction.added"]
    assert added == [{"chat_id": chat_id, "message_id": message_id, "emoji": THUMBS, "user_id": alice.id}]


def test_add_reaction_at_once_by_8_users_6_times_each_counts_each_once(backend, people):
    crowd = people(8)
    chat_id = crowd[0].new_chat(*crowd[1:])
    message_id = crowd[0].send(chat_id, "vote")
    since = crowd[0].last_event_id()
    answers = at_once(*[(person, "PUT", reaction_path(chat_id, message_id)) for person in crowd] * 6)
    assert statuses(answers) == [200] * 48
    assert all(answer.json()["reactions"][0]["me"] for answer in answers)
    assert stored_counts(backend, message_id) == [{"emoji": THUMBS, "count": 8}]
    assert duplicate_reactions(backend) == []
    for person in crowd:
        reaction = person.client.get(f"/chats/{chat_id}/messages/{message_id}").json()["reactions"]
        assert reaction == [{"emoji": THUMBS, "count": 8, "me": True}]
    reactors = crowd[0].client.get(reaction_path(chat_id, message_id)).json()["users"]
    assert sorted(user["id"] for user in reactors) == sorted(person.id for person in crowd)
    added = [e["data"]["user_id"] for e in crowd[0].events_after(since) if e["type"] == "reaction.added"]
    assert sorted(added) == sorted(person.id for person in crowd)


def test_add_and_remove_reaction_racing_keep_the_counts_the_rows_have(backend, people):
    crowd = people(6)
    chat_id = crowd[0].new_chat(*crowd[1:])
    message_id = crowd[0].send(chat_id, "mixed feelings")
    for person in crowd[::2]:
        assert person.client.put(reaction_path(chat_id, message_id, ROCKET)).status_code == 200
    requests = []
    for person in crowd:
        requests += [
            (person, "PUT", reaction_path(chat_id, message_id)),
            (person, "DELETE", reaction_path(chat_id, message_id)),
            (person, "PUT", reaction_path(chat_id, message_id, ROCKET)),
            (person, "DELETE", reaction_path(chat_id, message_id, ROCKET)),
            (person, "PUT", reaction_path(chat_id, message_id)),
        ]
    assert statuses(at_once(*requests)) == [200] * len(requests)
    # The counts on the message's row (what history shows) are those of the rows behind them.
    assert shown_counts(crowd[0], chat_id, message_id) == stored_counts(backend, message_id)
    assert duplicate_reactions(backend) == []


@pytest.mark.parametrize("deleted", ["the message", "its thread's root"])
def test_add_reaction_racing_the_deletion_is_200_or_404_and_leaves_no_orphan_row(backend, people, deleted):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    for round_ in range(ROUNDS):
        target = gone = alice.send(chat_id, f"soon gone {round_}")
        if deleted == "its thread's root":
            target = bob.send(chat_id, "a reply", thread_root_id=gone)
        delete, *reactions = at_once(
            (alice, "DELETE", f"/chats/{chat_id}?id={gone}"),
            (bob, "PUT", reaction_path(chat_id, target)),
            (alice, "PUT", reaction_path(chat_id, target, ROCKET)),
            (bob, "PUT", reaction_path(chat_id, target, ROCKET)),
        )
        assert delete.status_code == 200, delete.text
        for reaction in reactions:
            assert reaction.status_code in (200, 404), reaction.text
        assert backend.rows("SELECT id FROM reaction WHERE message_id = ?", target) == []
        assert bob.client.get(f"/chats/{chat_id}/messages/{target}").status_code == 404
    assert orphans(backend, "reaction") == []


# Pins


def test_pin_message_55_at_once_stops_at_50(backend, people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    messages = [alice.send(chat_id, f"pin me {n}") for n in range(55)]
    since = alice.last_event_id()
    answers = at_once(*[((alice, bob)[n % 2], "PUT", f"/chats/{chat_id}/pins/{m}") for n, m in enumerate(messages)])
    assert statuses(answers) == [200] * 50 + [409] * 5
    pinned = {m for m, answer in zip(messages, answers, strict=True) if answer.status_code == 200}
    assert backend.rows("SELECT COUNT(*) FROM pin WHERE chat_id = ?", chat_id) == [(50,)]
    listed = bob.client.get(f"/chats/{chat_id}/pins").json()["pins"]
    assert {pin["message"]["id"] for pin in listed} == pinned
    events = [e["data"]["message_id"] for e in alice.events_after(since) if e["type"] == "message.pinned"]
    assert sorted(events) == sorted(pinned)
    # Once one is unpinned, there is room for exactly one more.
    assert alice.client.delete(f"/chats/{chat_id}/pins/{min(pinned)}").status_code == 200
    waiting = [m for m in messages if m not in pinned]
    again = at_once(*[(bob, "PUT", f"/chats/{chat_id}/pins/{m}") for m in waiting])
    assert statuses(again) == [200] + [409] * 4


def test_pin_message_racing_the_deletion_is_200_or_404_and_leaves_no_orphan_row(backend, people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    for round_ in range(ROUNDS):
        message_id = alice.send(chat_id, f"soon gone {round_}")
        delete, pin = at_once(
            (alice, "DELETE", f"/chats/{chat_id}?id={message_id}"), (bob, "PUT", f"/chats/{chat_id}/pins/{message_id}")
        )
        assert delete.status_code == 200, delete.text
        assert pin.status_code in (200, 404), pin.text
    assert orphans(backend, "pin") == []
    assert bob.client.get(f"/chats/{chat_id}/pins").json()["pins"] == []


# Threads: following one, or reading it (which follows it), while its root is deleted.


@pytest.mark.parametrize("action", ["follow", "mark read"])
def test_follow_thread_racing_the_deletion_of_its_root_is_200_or_404_and_leaves_no_orphan_row(backend, people, action):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob, carol)
    for round_ in range(ROUNDS):
        root = alice.send(chat_id, f"soon gone {round_}")
        reply = bob.send(chat_id, "a reply", thread_root_id=root)
        thread = f"/chats/{chat_id}/messages/{root}/thread"
        following = (carol, "PUT", f"{thread}/follow")
        if action == "mark read":
            following = (carol, "POST", f"{thread}/read", {"message_id": reply})
        delete, follow = at_once((alice, "DELETE", f"/chats/{chat_id}?id={root}"), following)
        assert delete.status_code == 200, delete.text
        assert follow.status_code in (200, 404), follow.text
    assert orphans(backend, "threadfollow") == []
    assert carol.client.get("/threads").json()["threads"] == []
