"""Email privacy: who sees a user's email under each --email-visibility setting."""

import subprocess

import pytest

from chat_server import models
from chat_server.app import create_app

from .conftest import new_client
from .live_server import chat_server_command


def email_seen(viewer, user) -> str | None:
    response = viewer.client.get(f"/api/user/{user.id}")
    assert response.status_code == 200
    return response.json()["user"]["email"]


def test_a_stranger_sees_no_email_and_a_co_member_does(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    assert email_seen(bob, alice) is None
    assert bob.client.get("/api/user/0", params={"name": "alice"}).json()["user"]["email"] is None
    make_chat(alice, members=(bob,))
    assert email_seen(bob, alice) == "alice@example.com"
    assert email_seen(alice, bob) == "bob@example.com"
    assert email_seen(carol, alice) is None
    assert email_seen(alice, alice) == "alice@example.com"


def test_leaving_the_shared_chat_hides_the_email_again(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert email_seen(bob, alice) is None


def test_walking_user_ids_harvests_no_email(alice, make_user):
    people = [make_user() for _ in range(5)]
    seen = [alice.client.get(f"/api/user/{person.id}").json()["user"]["email"] for person in people]
    assert seen == [None] * 5


@pytest.mark.parametrize(("setting", "stranger_sees", "co_member_sees"), [("self", False, False), ("all", True, True)])
def test_email_visibility_setting(database_url, monkeypatch, setting, stranger_sees, co_member_sees):
    monkeypatch.setenv("CHAT_EMAIL_VISIBILITY", setting)
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    try:
        clients = {}
        for name in ("alice", "bob", "carol"):
            clients[name] = new_client(app)
            form = {"name": name, "password": "correct horse", "email": f"{name}@example.com"}
            assert clients[name].post("/api/user/0", data=form).status_code == 201
        ids = {name: int(client.cookies["user_id"]) for name, client in clients.items()}
        chat_id = clients["alice"].post("/api/chats", data={"title": "t"}).json()["id"]
        invited = clients["alice"].post(f"/api/chats/{chat_id}/members", data={"user_id": ids["bob"]})
        assert invited.status_code == 202
        assert clients["bob"].post(f"/api/invitations/{invited.json()['id']}").status_code == 200

        def email(viewer: str, user: str):
            return clients[viewer].get(f"/api/user/{ids[user]}").json()["user"]["email"]

        assert email("alice", "alice") == "alice@example.com"
        assert (email("bob", "alice") is not None) == co_member_sees
        assert (email("carol", "alice") is not None) == stranger_sees
    finally:
        models.db.close_all()


def test_an_unknown_email_visibility_is_refused_at_start():
    started = subprocess.run(
        [*chat_server_command(), "--email-visibility", "friends"], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    assert "--email-visibility" in started.stderr
