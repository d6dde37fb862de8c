"""Invitations: a stranger's add waits for the invitee, who lists, accepts or declines it."""

from chat_server import models
from chat_server.accounts import consent

EVENTS_JSON = {"Accept": "application/json"}


def test_list_invitations_shows_a_strangers_invitation(alice, bob, make_chat, invite):
    chat_id = make_chat(alice, "weekend")
    invitation = invite(alice, chat_id, bob)

    response = bob.client.get("/api/invitations")

    assert response.status_code == 200
    (listed,) = response.json()["invitations"]
    assert listed == {
        "id": invitation,
        "chat_id": chat_id,
        "title": "weekend",
        "inviter": {"id": alice.id, "name": "alice"},
        "created_at": listed["created_at"],
    }
    assert alice.client.get("/api/invitations").json() == {"invitations": []}


def test_list_invitations_newest_first_without_deleted_chats(alice, bob, make_chat, invite):
    first = invite(alice, make_chat(alice, "first"), bob)
    second_chat = make_chat(alice, "second")
    second = invite(alice, second_chat, bob)
    third = invite(alice, make_chat(alice, "third"), bob)
    assert alice.client.delete("/api/chats", params={"chat_id": second_chat}).status_code == 200

    listed = bob.client.get("/api/invitations").json()["invitations"]

    assert [invitation["id"] for invitation in listed] == [third, first]
    assert second not in [invitation["id"] for invitation in listed]


def test_accept_invitation_makes_a_member_and_tells_the_members(alice, bob, make_chat, invite, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "before bob")
    invitation = invite(alice, chat_id, bob)
    start = alice.client.get("/api/events", headers=EVENTS_JSON).json()["last_event_id"]

    response = bob.client.post(f"/api/invitations/{invitation}")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "chat_id": chat_id}
    assert [m["content"] for m in bob.client.get(f"/api/chats/{chat_id}").json()["messages"]] == ["before bob"]
    events = alice.client.get("/api/events", params={"last_event_id": start}, headers=EVENTS_JSON).json()["events"]
    assert [(e["type"], e["data"]["user"]["id"]) for e in events] == [("member.added", bob.id)]
    assert bob.client.get("/api/invitations").json() == {"invitations": []}


def test_accept_invitation_makes_contacts_who_see_each_others_email(alice, bob, make_chat, invite):
    invitation = invite(alice, make_chat(alice), bob)
    assert alice.client.get(f"/api/user/{bob.id}").json()["user"]["email"] is None
    assert bob.client.post(f"/api/invitations/{invitation}").status_code == 200
    assert alice.client.get(f"/api/user/{bob.id}").json()["user"]["email"] == "bob@example.com"
    assert bob.client.get(f"/api/user/{alice.id}").json()["user"]["email"] == "alice@example.com"


def test_accept_invitation_someone_elses_is_forbidden(alice, bob, make_user, make_chat, invite):
    carol = make_user("carol")
    invitation = invite(alice, make_chat(alice), bob)
    assert carol.client.post(f"/api/invitations/{invitation}").status_code == 403
    assert alice.client.post(f"/api/invitations/{invitation}").status_code == 403
    assert alice.client.delete(f"/api/invitations/{invitation}").status_code == 403
    assert [i["id"] for i in bob.client.get("/api/invitations").json()["invitations"]] == [invitation]


def test_accept_invitation_unknown_is_not_found(alice):
    assert alice.client.post("/api/invitations/424242").status_code == 404
    assert alice.client.delete("/api/invitations/424242").status_code == 404


def test_accept_invitation_to_a_deleted_chat_is_not_found(alice, bob, make_chat, invite):
    chat_id = make_chat(alice)
    invitation = invite(alice, chat_id, bob)
    assert alice.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert bob.client.post(f"/api/invitations/{invitation}").status_code == 404
    assert bob.client.get("/api/chats").json()["chats"] == []


def test_decline_invitation_adds_nobody_and_leaves_the_list(alice, bob, make_chat, invite):
    chat_id = make_chat(alice)
    invitation = invite(alice, chat_id, bob)

    response = bob.client.delete(f"/api/invitations/{invitation}")

    assert response.status_code == 200
    assert bob.client.get("/api/invitations").json() == {"invitations": []}
    assert bob.client.post(f"/api/invitations/{invitation}").status_code == 404
    assert bob.client.get(f"/api/chats/{chat_id}").status_code == 403


def test_invitations_go_with_the_invitees_account(alice, bob, make_chat, invite):
    invite(alice, make_chat(alice), bob)
    assert bob.client.delete(f"/api/user/{bob.id}").status_code == 200
    with models.db.connection_context():
        assert models.Invitation.select().count() == 0


def test_list_invitations_lists_only_the_newest(alice, bob, make_chat, invite, monkeypatch):
    monkeypatch.setattr(consent, "LISTED", 2)
    invitations = [invite(alice, make_chat(alice, f"chat {n}"), bob) for n in range(3)]
    listed = bob.client.get("/api/invitations").json()["invitations"]
    assert [invitation["id"] for invitation in listed] == invitations[:0:-1]
