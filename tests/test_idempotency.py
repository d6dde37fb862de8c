"""Idempotency-Key on create_chat, send_message and add_member: a retry replays, a concurrent retry stores once."""

import datetime
import threading

import pytest

from chat_server import models
from chat_server.edge import idempotency
from tests.conftest import join, new_client

KEY = "5f0c7a9e-7d2b-4a51-9d3e-2f9c1b0e6a44"


def keyed(key: str = KEY) -> dict:
    return {"Idempotency-Key": key}


def stored_messages(chat_id: int) -> list[str]:
    with models.db.connection_context():
        return [m.content for m in models.Message.select().where(models.Message.chat == chat_id)]


def created_events(chat_id: int) -> int:
    with models.db.connection_context():
        events = models.Event.select().where(models.Event.chat_id == chat_id, models.Event.kind == "message.created")
        return events.count()


def test_send_message_retry_with_same_key_replays_the_first_response(alice, make_chat):
    chat_id = make_chat(alice)
    first = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    again = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert stored_messages(chat_id) == ["hi"]
    assert created_events(chat_id) == 1


def test_send_message_without_key_is_never_replayed(alice, make_chat, send):
    chat_id = make_chat(alice)
    assert send(alice, chat_id, "hi") != send(alice, chat_id, "hi")


def test_send_message_concurrent_retries_store_one_message(app, alice, make_chat):
    chat_id = make_chat(alice)
    clients = [new_client(app, cookies=dict(alice.client.cookies)) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    responses = []

    def send(client):
        barrier.wait()
        responses.append(client.post(f"/api/chats/{chat_id}", data={"content": "once"}, headers=keyed()))

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 7
    assert stored_messages(chat_id) == ["once"]
    assert created_events(chat_id) == 1


def test_send_message_same_key_different_content_is_conflict(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed()).status_code == 201
    response = alice.client.post(f"/api/chats/{chat_id}", data={"content": "bye"}, headers=keyed())
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["error"]
    assert stored_messages(chat_id) == ["hi"]


def test_send_message_same_key_other_chat_is_conflict(alice, make_chat):
    first, second = make_chat(alice, "one"), make_chat(alice, "two")
    assert alice.client.post(f"/api/chats/{first}", data={"content": "hi"}, headers=keyed()).status_code == 201
    assert alice.client.post(f"/api/chats/{second}", data={"content": "hi"}, headers=keyed()).status_code == 409
    assert stored_messages(second) == []


def test_send_message_same_key_from_another_user_is_independent(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    mine = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    theirs = bob.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]


def test_send_message_error_is_not_stored(alice, bob, make_chat):
    """A 403 stores nothing: once the sender is a member, the same request with the same key goes through."""
    chat_id = make_chat(alice)
    assert bob.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed()).status_code == 403
    join(alice, chat_id, bob)
    response = bob.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers
    assert stored_messages(chat_id) == ["hi"]


def test_send_message_key_older_than_a_day_is_not_replayed(alice, make_chat):
    chat_id = make_chat(alice)
    first = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed())
    age_keys(datetime.timedelta(hours=24, seconds=1))
    again = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi again"}, headers=keyed())
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert stored_messages(chat_id) == ["hi", "hi again"]
    # The stale row was replaced: the key now stands for the second request.
    replay = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi again"}, headers=keyed())
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == again.json()


def age_keys(by: datetime.timedelta) -> None:
    """Make every stored key look as if it had been used `by` ago."""
    with models.db.connection_context():
        models.IdempotencyKey.update(created_at=models.utcnow() - by).execute()


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9"])
def test_send_message_malformed_key_is_bad_request(alice, make_chat, key):
    chat_id = make_chat(alice)
    response = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi"}, headers=keyed(key.encode()))
    assert response.status_code == 400
    assert stored_messages(chat_id) == []


def test_create_chat_retry_replays_id_and_location(alice):
    first = alice.client.post("/api/chats", data={"title": "plans"}, headers=keyed())
    again = alice.client.post("/api/chats", data={"title": "plans"}, headers=keyed())
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"/api/chats/{first.json()['id']}"
    assert [chat["id"] for chat in alice.client.get("/api/chats").json()["chats"]] == [first.json()["id"]]


def test_add_member_retry_replays_201_not_already_a_member(alice, bob, make_chat):
    make_chat(bob, "contacts", members=(alice,))
    chat_id = make_chat(alice)
    first = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}, headers=keyed())
    again = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}, headers=keyed())
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}).status_code == 409


def test_add_member_retry_replays_202_not_already_invited(alice, bob, make_chat):
    chat_id = make_chat(alice)
    first = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}, headers=keyed())
    again = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}, headers=keyed())
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert [i["id"] for i in bob.client.get("/api/invitations").json()["invitations"]] == [first.json()["id"]]


def test_prune_expired_deletes_only_old_keys(alice, make_chat):
    chat_id = make_chat(alice)
    for n in range(3):
        alice.client.post(f"/api/chats/{chat_id}", data={"content": f"{n}"}, headers=keyed(f"old-{n}"))
    age_keys(idempotency.PRUNE_AFTER + datetime.timedelta(seconds=1))
    alice.client.post(f"/api/chats/{chat_id}", data={"content": "new"}, headers=keyed("new"))
    idempotency.prune_expired()
    with models.db.connection_context():
        assert [row.key for row in models.IdempotencyKey.select()] == ["new"]
