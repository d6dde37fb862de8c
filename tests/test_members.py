"""Chat membership: list members, add someone, or invite them when they have not said you may add them."""

import datetime
import subprocess
import threading

from chat_server import models
from chat_server.accounts import ratelimit
from chat_server.app import create_app

from .conftest import new_client
from .live_server import chat_server_command


def contacts(first, second, make_chat) -> None:
    """Make each the other's contact: a chat the first created and the second joined by accepting."""
    make_chat(first, "contacts", members=(second,))


def add(adder, chat_id: int, **form):
    return adder.client.post(f"/api/chats/{chat_id}/members", data=form)


def member_ids(person, chat_id: int) -> list[int]:
    return [m["id"] for m in person.client.get(f"/api/chats/{chat_id}/members").json()["members"]]


def set_who_can_add_me(person, setting: str) -> None:
    assert person.client.put(f"/api/user/{person.id}", data={"who_can_add_me": setting}).status_code == 200


def test_list_members_in_join_order(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    response = bob.client.get(f"/api/chats/{chat_id}/members")
    assert response.status_code == 200
    assert response.json() == {
        "members": [
            {"id": alice.id, "name": "alice", "avatar_url": None},
            {"id": bob.id, "name": "bob", "avatar_url": None},
        ]
    }


def test_add_member_by_name(alice, bob, make_chat, send):
    contacts(bob, alice, make_chat)
    chat_id = make_chat(alice)
    send(alice, chat_id, "before bob")
    response = alice.client.post(f"/api/chats/{chat_id}/members", data={"name": "bob"})
    assert response.status_code == 201
    assert response.json() == {"status": "ok"}
    assert [m["content"] for m in bob.client.get(f"/api/chats/{chat_id}").json()["messages"]] == ["before bob"]
    assert chat_id in [c["id"] for c in bob.client.get("/api/chats").json()["chats"]]


def test_add_member_by_id_by_any_member(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    contacts(carol, bob, make_chat)
    chat_id = make_chat(alice, members=(bob,))
    assert bob.client.post(f"/api/chats/{chat_id}/members", data={"user_id": carol.id}).status_code == 201
    assert carol.client.get(f"/api/chats/{chat_id}").status_code == 200


def test_add_member_user_id_wins_over_name(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    contacts(carol, alice, make_chat)
    contacts(bob, alice, make_chat)
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


def test_add_member_a_stranger_is_invited_not_added(alice, bob, make_chat):
    chat_id = make_chat(alice)

    response = add(alice, chat_id, user_id=bob.id)

    assert response.status_code == 202
    assert response.json() == {"status": "invited", "id": response.json()["id"]}
    assert member_ids(alice, chat_id) == [alice.id]
    assert bob.client.get(f"/api/chats/{chat_id}").status_code == 403
    assert bob.client.get("/api/chats").json()["chats"] == []


def test_add_member_walking_strangers_ids_harvests_no_email_and_no_membership(alice, make_user, make_chat):
    """Finding 3: adding someone counted as contact, so a stranger read the email of everyone they added."""
    people = [make_user() for _ in range(5)]
    chat_id = make_chat(alice)

    statuses = [add(alice, chat_id, user_id=person.id).status_code for person in people]

    assert statuses == [202] * 5
    assert [alice.client.get(f"/api/user/{p.id}").json()["user"]["email"] for p in people] == [None] * 5
    assert member_ids(alice, chat_id) == [alice.id]


def test_add_member_a_contact_is_added_at_once(alice, bob, make_chat):
    contacts(bob, alice, make_chat)
    chat_id = make_chat(alice, "second")
    assert add(alice, chat_id, user_id=bob.id).status_code == 201
    assert bob.id in member_ids(alice, chat_id)


def test_add_member_someone_you_added_is_not_a_contact_of_yours_for_them(alice, bob, make_user, make_chat):
    """Being added by someone makes them no contact: only chats you joined yourself count."""
    set_who_can_add_me(bob, "anyone")
    chat_id = make_chat(alice)
    assert add(alice, chat_id, user_id=bob.id).status_code == 201
    assert alice.client.get(f"/api/user/{bob.id}").json()["user"]["email"] is None
    set_who_can_add_me(bob, "contacts")
    assert add(alice, make_chat(alice, "another"), user_id=bob.id).status_code == 202


def test_add_member_who_can_add_me_nobody_invites_even_a_contact(alice, bob, make_chat):
    contacts(bob, alice, make_chat)
    set_who_can_add_me(bob, "nobody")
    assert add(alice, make_chat(alice, "second"), user_id=bob.id).status_code == 202


def test_add_member_who_can_add_me_anyone_adds_a_stranger_at_once(alice, bob, make_chat):
    set_who_can_add_me(bob, "anyone")
    chat_id = make_chat(alice)
    assert add(alice, chat_id, name="bob").status_code == 201
    assert member_ids(bob, chat_id) == [alice.id, bob.id]


def test_add_member_server_default_anyone_adds_strangers_at_once(database_url, monkeypatch):
    monkeypatch.setenv("CHAT_DEFAULT_WHO_CAN_ADD_ME", "anyone")
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    try:
        clients = {}
        for name in ("alice", "bob"):
            clients[name] = new_client(app)
            form = {"name": name, "password": "correct horse", "email": f"{name}@example.com"}
            assert clients[name].post("/api/user/0", data=form).status_code == 201
        chat_id = clients["alice"].post("/api/chats", data={"title": "t"}).json()["id"]
        assert clients["alice"].post(f"/api/chats/{chat_id}/members", data={"name": "bob"}).status_code == 201
        bob = clients["bob"].get(f"/api/user/{clients['bob'].cookies['user_id']}").json()["user"]
        assert bob["who_can_add_me"] == "anyone"
    finally:
        models.db.close_all()


def test_add_member_an_unknown_default_who_can_add_me_is_refused_at_start():
    started = subprocess.run(
        [*chat_server_command(), "--default-who-can-add-me", "friends"], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    assert "--default-who-can-add-me" in started.stderr


def test_add_member_already_invited_is_conflict(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(carol,))
    assert add(alice, chat_id, user_id=bob.id).status_code == 202
    response = add(carol, chat_id, user_id=bob.id)
    assert response.status_code == 409
    assert "already invited" in response.json()["error"]


def test_add_member_declined_cannot_be_invited_again_for_a_week(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice)
    invitation = add(alice, chat_id, user_id=bob.id).json()["id"]
    assert bob.client.delete(f"/api/invitations/{invitation}").status_code == 200

    again = add(alice, chat_id, user_id=bob.id)
    elsewhere = add(alice, make_chat(alice, "elsewhere"), user_id=bob.id)
    by_another = add(carol, make_chat(carol, "carol's"), user_id=bob.id)

    assert (again.status_code, elsewhere.status_code, by_another.status_code) == (409, 409, 202)
    assert "declined" in again.json()["error"]
    with models.db.connection_context():
        eight_days_ago = models.utcnow() - datetime.timedelta(days=8)
        models.Invitation.update(declined_at=eight_days_ago).where(models.Invitation.id == invitation).execute()
    assert add(alice, chat_id, user_id=bob.id).status_code == 202


def test_add_member_invitations_are_rate_limited_per_inviter(alice, bob, make_user, make_chat, monkeypatch):
    limits = ratelimit.RateLimits("off", "off", "off", "memory://", invite="3/3600")
    monkeypatch.setattr(ratelimit, "rate_limits", limits)
    chat_id = make_chat(alice)
    strangers = [make_user() for _ in range(4)]
    contacts(bob, alice, make_chat)

    statuses = [add(alice, chat_id, user_id=person.id).status_code for person in strangers]
    refused = add(alice, chat_id, user_id=strangers[-1].id)

    assert statuses == [202, 202, 202, 429]
    assert int(refused.headers["Retry-After"]) > 0
    assert add(alice, chat_id, user_id=bob.id).status_code == 201  # a contact needs no invitation
    assert add(bob, chat_id, user_id=strangers[-1].id).status_code == 202  # the limit is alice's


def test_add_member_a_stranger_cannot_push_chats_onto_a_victim(alice, bob, make_chat):
    """Finding 3: one account put 20,000 unsolicited chats onto one user. Now each is an invitation the victim never
    joins, and the 51st within the hour is refused (default --invite-rate 50/3600)."""
    chats = [make_chat(alice, f"spam {n}") for n in range(51)]

    statuses = [add(alice, chat_id, user_id=bob.id).status_code for chat_id in chats]

    assert statuses == [202] * 50 + [429]
    assert bob.client.get("/api/chats").json()["chats"] == []
    assert len(bob.client.get("/api/invitations").json()["invitations"]) == 50
