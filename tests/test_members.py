"""Chat membership: list members, add someone."""

import threading

from chat_server import models


def test_list_members_in_join_order(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    response = bob.client.get(f"/api/chats/{chat_id}/members")
    assert response.status_code == 200
    assert response.json() == {"members": [{"id": alice.id, "name": "alice"}, {"id": bob.id, "name": "bob"}]}


def test_add_member_by_name(alice, bob, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "before bob")
    response = alice.client.post(f"/api/chats/{chat_id}/members", data={"name": "bob"})
    assert response.status_code == 201
    assert response.json() == {"status": "ok"}
    assert [m["content"] for m in bob.client.get(f"/api/chats/{chat_id}").json()["messages"]] == ["before bob"]
    assert [c["id"] for c in bob.client.get("/api/chats").json()["chats"]] == [chat_id]


def test_add_member_by_id_by_any_member(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(bob,))
    assert bob.client.post(f"/api/chats/{chat_id}/members", data={"user_id": carol.id}).status_code == 201
    assert carol.client.get(f"/api/chats/{chat_id}").status_code == 200


def test_add_member_user_id_wins_over_name(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice)
    assert (
        alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": carol.id, "name": "bob"}).status_code == 201
    )
    names = [m["name"] for m in alice.client.get(f"/api/chats/{chat_id}/members").json()["members"]]
    assert names == ["alice", "carol"]


def test_add_member_existing_is_conflict(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id}).status_code == 409
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": alice.id}).status_code == 409


def test_add_member_unknown_user_is_not_found(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": 424242}).status_code == 404
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"name": "nobody"}).status_code == 404


def test_add_member_neither_field_is_bad_request(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(f"/api/chats/{chat_id}/members", data={"other": "x"})
    assert response.status_code == 400


def test_list_members_unknown_chat_is_not_found(alice):
    assert alice.client.get("/api/chats/424242/members").status_code == 404


def test_leave_chat_last_two_members_at_once_deletes_it(alice, bob, make_chat, send):
    """Neither may miss that the other left too (PostgreSQL runs both transactions at once)."""
    chats = [make_chat(alice, f"chat {n}", members=(bob,)) for n in range(10)]
    for chat_id in chats:
        send(bob, chat_id, "bye")
    for chat_id in chats:
        barrier = threading.Barrier(2)

        def leave(person, chat_id=chat_id, barrier=barrier):
            with models.db.connection_context():
                barrier.wait()
                models.Membership.leave(chat_id, person.id)

        leavers = [threading.Thread(target=leave, args=(person,)) for person in (alice, bob)]
        for leaver in leavers:
            leaver.start()
        for leaver in leavers:
            leaver.join()
    with models.db.connection_context():
        assert models.Chat.select().where(models.Chat.id.in_(chats)).count() == 0
        assert models.Message.select().where(models.Message.chat.in_(chats)).count() == 0
    assert alice.client.get(f"/api/chats/{chats[0]}").status_code == 404


def test_add_member_to_a_chat_being_deleted_is_conflict(alice, bob, make_chat):
    chat_id = make_chat(alice)
    with models.db.connection_context():
        models.DeletedChat.create(chat=chat_id)
    response = alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": bob.id})
    assert response.status_code == 409
    with models.db.connection_context():
        assert not models.Membership.exists(chat_id, bob.id)
