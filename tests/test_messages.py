"""Messages: read with pagination, send, delete."""

import threading

import pytest
from playhouse.test_utils import assert_query_count

from chat_server import models
from tests.conftest import new_client


def test_create_message_returns_id(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hello"})
    assert response.status_code == 201
    assert response.json() == {"status": "ok", "id": response.json()["id"], "mentions": [], "mentions_all": False}


def test_list_messages_oldest_first_with_fields(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    first = send(alice, chat_id, "one")
    second = send(bob, chat_id, "two")
    messages = bob.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert [(m["id"], m["sender_id"], m["content"]) for m in messages] == [
        (first, alice.id, "one"),
        (second, bob.id, "two"),
    ]
    assert messages[0]["time"] <= messages[1]["time"]
    assert messages[0]["time"].endswith("Z") and "T" in messages[0]["time"]


def test_create_message_content_limits(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "c" * 10_000}).status_code == 201
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "c" * 10_001}).status_code == 400
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": ""}).status_code == 400
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "nul\x00"}).status_code == 400
    assert len(alice.client.get(f"/api/chats/{chat_id}").json()["messages"]) == 1


def test_create_message_unicode_round_trips(alice, make_chat, send):
    chat_id = make_chat(alice)
    text = "héllo 👋 \u202e مرحبا \U0010ffff"
    send(alice, chat_id, text)
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"][0]["content"] == text


@pytest.fixture
def history(alice, make_chat, send):
    chat_id = make_chat(alice)
    ids = [send(alice, chat_id, f"m{n}") for n in range(10)]
    return chat_id, ids


def _ids(person, chat_id, **params):
    response = person.client.get(f"/api/chats/{chat_id}", params=params)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["messages"]]


def test_list_messages_limit_gives_newest(alice, history):
    chat_id, ids = history
    assert _ids(alice, chat_id, limit=3) == ids[-3:]


def test_list_messages_before_pages_back(alice, history):
    chat_id, ids = history
    assert _ids(alice, chat_id, limit=3, before=ids[5]) == ids[2:5]
    assert _ids(alice, chat_id, limit=3, before=ids[1]) == ids[:1]
    assert _ids(alice, chat_id, before=ids[0]) == []


def test_list_messages_after_catches_up_oldest_first(alice, history):
    chat_id, ids = history
    assert _ids(alice, chat_id, limit=3, after=ids[2]) == ids[3:6]
    assert _ids(alice, chat_id, after=ids[-1]) == []
    assert _ids(alice, chat_id, after=0) == ids


def test_list_messages_between_before_and_after(alice, history):
    chat_id, ids = history
    assert _ids(alice, chat_id, after=ids[1], before=ids[6], limit=2) == ids[4:6]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"before": -1}, {"after": 2**63}])
def test_list_messages_bad_paging_is_bad_request(alice, history, params):
    chat_id, _ = history
    assert alice.client.get(f"/api/chats/{chat_id}", params=params).status_code == 400


def test_list_messages_limit_1000_is_accepted(alice, history):
    chat_id, ids = history
    assert _ids(alice, chat_id, limit=1000) == ids


def test_list_messages_query_count_does_not_grow(alice, history):
    chat_id, _ = history
    with assert_query_count(1):  # the page, which checks the session and the membership itself
        assert len(alice.client.get(f"/api/chats/{chat_id}", params={"limit": 1000}).json()["messages"]) == 10


def test_list_messages_explains_an_empty_page(alice, bob, history):
    chat_id, ids = history
    # Past the newest message a member gets an empty page; a stranger gets 403 and an unknown chat 404 all the same.
    assert alice.client.get(f"/api/chats/{chat_id}", params={"after": ids[-1]}).json() == {"messages": []}
    assert bob.client.get(f"/api/chats/{chat_id}", params={"after": ids[-1]}).status_code == 403
    assert bob.client.get(f"/api/chats/{chat_id}").status_code == 403
    assert alice.client.get("/api/chats/999999").status_code == 404


def test_delete_message_own(alice, history):
    chat_id, ids = history
    response = alice.client.delete(f"/api/chats/{chat_id}", params={"id": ids[4]})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert ids[4] not in _ids(alice, chat_id)
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": ids[4]}).status_code == 404


def test_delete_message_someone_elses_is_forbidden(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "mine")
    assert bob.client.delete(f"/api/chats/{chat_id}", params={"id": message_id}).status_code == 403
    assert _ids(alice, chat_id) == [message_id]


def test_delete_message_from_another_chat_is_not_found(alice, make_chat, send):
    one, two = make_chat(alice), make_chat(alice)
    message_id = send(alice, one, "in chat one")
    assert alice.client.delete(f"/api/chats/{two}", params={"id": message_id}).status_code == 404


def test_deleted_message_id_is_never_reused(alice, make_chat, send):
    chat_id = make_chat(alice)
    last = send(alice, chat_id, "newest")
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": last}).status_code == 200
    assert send(alice, chat_id, "next") > last


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("GET", "/api/chats/{chat}", {}),
        ("POST", "/api/chats/{chat}", {"data": {"content": "sneaky"}}),
        ("PUT", "/api/chats/{chat}", {"data": {"title": "sneaky"}}),
        ("DELETE", "/api/chats/{chat}", {"params": {"id": "{message}"}}),
        ("GET", "/api/chats/{chat}/members", {}),
        ("POST", "/api/chats/{chat}/members", {"data": {"name": "mallory"}}),
        ("DELETE", "/api/chats", {"params": {"chat_id": "{chat}"}}),
    ],
)
def test_non_member_is_forbidden_on_every_chat_operation(alice, make_user, make_chat, send, method, path, kwargs):
    mallory = make_user("mallory")
    chat_id = make_chat(alice, "private")
    message_id = send(alice, chat_id, "secret")
    fill = {"chat": chat_id, "message": message_id}
    kwargs = {k: {f: str(v).format(**fill) for f, v in d.items()} for k, d in kwargs.items()}
    response = mallory.client.request(method, path.format(**fill), **kwargs)
    assert response.status_code == 403
    assert "error" in response.json()
    assert [m["content"] for m in alice.client.get(f"/api/chats/{chat_id}").json()["messages"]] == ["secret"]
    assert alice.client.get("/api/chats").json()["chats"][0]["title"] == "private"
    assert len(alice.client.get(f"/api/chats/{chat_id}/members").json()["members"]) == 1


@pytest.mark.parametrize(
    ("method", "request_args"),
    [
        ("GET", {}),
        ("POST", {"data": {"content": "x"}}),
        ("PUT", {"data": {"title": "x"}}),
        ("DELETE", {"params": {"id": 1}}),
    ],
)
def test_unknown_chat_is_not_found(alice, method, request_args):
    response = alice.client.request(method, "/api/chats/424242", **request_args)
    assert response.status_code == 404


def test_concurrent_sends_are_all_stored(app, make_user, make_chat):
    """64 clients send at once; none may see "database is locked" or any other error."""
    senders = [make_user() for _ in range(8)]
    chat_id = make_chat(senders[0], members=tuple(senders[1:]))
    clients = [new_client(app, cookies=dict(p.client.cookies)) for p in senders for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    statuses = []

    def send_one(n, c):
        barrier.wait()
        statuses.append(c.post(f"/api/chats/{chat_id}", data={"content": f"msg {n}"}).status_code)

    threads = [threading.Thread(target=send_one, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 64
    stored = {m.content for m in models.Message.select().where(models.Message.chat == chat_id)}
    assert stored == {f"msg {n}" for n in range(64)}
