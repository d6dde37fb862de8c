"""Chats: list, create, rename, leave."""

from playhouse.test_utils import assert_query_count

from chat_server import models


def test_list_chats_empty(alice):
    response = alice.client.get("/api/chats")
    assert response.status_code == 200
    assert response.json() == {"chats": []}


def test_create_chat_returns_id_and_location(alice):
    response = alice.client.post("/api/chats", data={"title": "general"})
    assert response.status_code == 201
    chat_id = response.json()["id"]
    assert response.json() == {"status": "ok", "id": chat_id}
    assert response.headers["location"] == f"/api/chats/{chat_id}"


def test_create_chat_title_limits(alice):
    assert alice.client.post("/api/chats", data={"title": "t" * 200}).status_code == 201
    assert alice.client.post("/api/chats", data={"title": "t" * 201}).status_code == 400
    assert alice.client.post("/api/chats", data={"title": ""}).status_code == 400
    assert alice.client.post("/api/chats", data={}).status_code == 400


def test_create_chat_requires_login(client):
    assert client.post("/api/chats", data={"title": "x"}).status_code == 401


def test_list_chats_empty_chat_has_null_last_message(alice, make_chat):
    chat_id = make_chat(alice, "quiet")
    assert alice.client.get("/api/chats").json()["chats"] == [
        {"id": chat_id, "title": "quiet", "last_message": None, "last_message_time": None, "sender_id": None}
    ]


def test_list_chats_shows_last_message_newest_activity_first(alice, bob, make_chat, send):
    older = make_chat(alice, "older", members=(bob,))
    newer = make_chat(alice, "newer")
    send(alice, older, "first")
    send(bob, older, "second")
    send(alice, newer, "third")
    chats = alice.client.get("/api/chats").json()["chats"]
    assert [c["id"] for c in chats] == [newer, older]
    assert chats[1]["last_message"] == "second"
    assert chats[1]["sender_id"] == bob.id
    assert chats[1]["last_message_time"].endswith("Z")
    send(alice, older, "fourth")
    assert [c["id"] for c in alice.client.get("/api/chats").json()["chats"]] == [older, newer]


def test_list_chats_only_your_chats(alice, bob, make_chat):
    make_chat(alice, "alice only")
    assert bob.client.get("/api/chats").json() == {"chats": []}


def test_list_chats_last_message_follows_deletion(alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "kept")
    doomed = send(alice, chat_id, "deleted")
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": doomed}).status_code == 200
    assert alice.client.get("/api/chats").json()["chats"][0]["last_message"] == "kept"


def test_list_chats_query_count_does_not_grow(alice, make_chat, send):
    for n in range(12):
        send(alice, make_chat(alice, f"chat {n}"), "hi")
    with assert_query_count(2):  # the session check and the listing
        assert len(alice.client.get("/api/chats").json()["chats"]) == 12


def test_rename_chat_by_any_member(alice, bob, make_chat):
    chat_id = make_chat(alice, "before", members=(bob,))
    assert bob.client.put(f"/api/chats/{chat_id}", data={"title": "after"}).status_code == 200
    assert alice.client.get("/api/chats").json()["chats"][0]["title"] == "after"


def test_rename_chat_not_member_is_forbidden(alice, bob, make_chat):
    chat_id = make_chat(alice, "mine")
    assert bob.client.put(f"/api/chats/{chat_id}", data={"title": "theirs"}).status_code == 403
    assert alice.client.get("/api/chats").json()["chats"][0]["title"] == "mine"


def test_rename_chat_unknown_is_not_found(alice):
    assert alice.client.put("/api/chats/424242", data={"title": "x"}).status_code == 404


def test_rename_chat_title_too_long_is_bad_request(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.put(f"/api/chats/{chat_id}", data={"title": "t" * 201}).status_code == 400


def test_leave_chat_keeps_chat_for_others(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    send(alice, chat_id, "bye")
    response = alice.client.delete("/api/chats", params={"chat_id": chat_id})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert alice.client.get("/api/chats").json() == {"chats": []}
    assert alice.client.get(f"/api/chats/{chat_id}").status_code == 403
    assert bob.client.get(f"/api/chats/{chat_id}").json()["messages"][0]["content"] == "bye"


def test_leave_chat_last_member_deletes_chat_and_messages(alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "gone soon")
    assert alice.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert alice.client.get(f"/api/chats/{chat_id}").status_code == 404
    assert models.Message.select().where(models.Message.chat == chat_id).count() == 0


def test_leave_chat_not_member_is_forbidden(alice, bob, make_chat):
    chat_id = make_chat(alice)
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 403


def test_leave_chat_unknown_is_not_found(alice):
    assert alice.client.delete("/api/chats", params={"chat_id": 424242}).status_code == 404


def test_leave_chat_missing_or_bad_chat_id_is_bad_request(alice):
    assert alice.client.delete("/api/chats").status_code == 400
    assert alice.client.delete("/api/chats", params={"chat_id": "abc"}).status_code == 400
    assert alice.client.delete("/api/chats", params={"chat_id": 2**64}).status_code == 400


def test_deleted_chat_id_is_never_reused(alice, make_chat):
    first = make_chat(alice)
    assert alice.client.delete("/api/chats", params={"chat_id": first}).status_code == 200
    assert make_chat(alice) > first
