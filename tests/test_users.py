"""Users: register, read, update, delete."""

import sqlite3

import pytest
from peewee import SqliteDatabase

from chat_server import models
from tests.conftest import new_client


def test_create_user_name_taken_is_conflict(client, alice):
    response = client.post("/api/user/0", data={"name": "alice", "password": "password1", "email": "x@example.com"})
    assert response.status_code == 409
    assert response.json()["error"] == "that name is taken"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "n" * 65),
        ("password", "short"),
        ("password", "p" * 257),
        ("email", "not-an-email"),
        ("email", "alice@example.com\n"),
        ("email", "a" * 250 + "@example.com"),
        ("name", "nul\x00byte"),
    ],
)
def test_create_user_invalid_field_is_bad_request(client, field, value):
    data = {"name": "dave", "password": "password1", "email": "d@example.com", field: value}
    response = client.post("/api/user/0", data=data)
    assert response.status_code == 400
    assert field in response.json()["error"]


def test_create_user_at_the_limits_is_accepted(client):
    data = {"name": "n" * 64, "password": "p" * 256, "email": "e" * 64 + "@" + "d" * 180 + ".com"}
    assert client.post("/api/user/0", data=data).status_code == 201


def test_create_user_missing_email_is_bad_request(client):
    response = client.post("/api/user/0", data={"name": "dave", "password": "password1"})
    assert response.status_code == 400


def test_get_user_by_id(alice, bob):
    response = alice.client.get(f"/api/user/{bob.id}")
    assert response.status_code == 200
    assert response.json() == {"user": {"id": bob.id, "name": "bob", "email": None, "avatar_url": None}}


def test_get_user_by_name_ignores_path_id(alice, bob):
    response = alice.client.get("/api/user/0", params={"name": "bob"})
    assert response.status_code == 200
    assert response.json()["user"]["id"] == bob.id


@pytest.mark.parametrize("path, params", [("/api/user/987654", {}), ("/api/user/0", {"name": "nobody"})])
def test_get_user_not_found(alice, path, params):
    response = alice.client.get(path, params=params)
    assert response.status_code == 404
    assert "error" in response.json()


def test_get_user_requires_login(client, alice):
    assert client.get(f"/api/user/{alice.id}").status_code == 401


def test_get_user_non_integer_id_is_not_found(alice):
    assert alice.client.get("/api/user/abc").status_code == 404


def test_update_user_changes_name_and_email(alice):
    response = alice.client.put(f"/api/user/{alice.id}", data={"name": "alicia", "email": "new@example.com"})
    assert response.status_code == 200
    assert alice.client.get(f"/api/user/{alice.id}").json()["user"] == {
        "id": alice.id,
        "name": "alicia",
        "email": "new@example.com",
        "avatar_url": None,
        "who_can_add_me": "contacts",
    }


def test_get_user_shows_who_can_add_me_to_its_owner_only(alice, bob):
    assert alice.client.get(f"/api/user/{alice.id}").json()["user"]["who_can_add_me"] == "contacts"
    assert "who_can_add_me" not in bob.client.get(f"/api/user/{alice.id}").json()["user"]


@pytest.mark.parametrize("setting", ["anyone", "contacts", "nobody"])
def test_update_user_changes_who_can_add_me(alice, setting):
    assert alice.client.put(f"/api/user/{alice.id}", data={"who_can_add_me": setting}).status_code == 200
    assert alice.client.get(f"/api/user/{alice.id}").json()["user"]["who_can_add_me"] == setting


@pytest.mark.parametrize("setting", ["everyone", ""])
def test_update_user_unknown_who_can_add_me_is_bad_request(alice, setting):
    assert alice.client.put(f"/api/user/{alice.id}", data={"who_can_add_me": setting}).status_code == 400


def test_update_user_only_sent_fields_change(alice):
    assert alice.client.put(f"/api/user/{alice.id}", data={"email": "only@example.com"}).status_code == 200
    assert alice.client.get(f"/api/user/{alice.id}").json()["user"]["name"] == "alice"


def test_update_user_to_own_name_is_allowed(alice):
    assert alice.client.put(f"/api/user/{alice.id}", data={"name": "alice"}).status_code == 200


def test_update_user_name_taken_is_conflict(alice, bob):
    response = alice.client.put(f"/api/user/{alice.id}", data={"name": "bob"})
    assert response.status_code == 409


def test_update_user_someone_else_is_forbidden(alice, bob):
    response = alice.client.put(f"/api/user/{bob.id}", data={"name": "hacked"})
    assert response.status_code == 403
    assert alice.client.get(f"/api/user/{bob.id}").json()["user"]["name"] == "bob"


def test_update_user_unknown_is_not_found(alice):
    assert alice.client.put("/api/user/987654", data={"name": "x"}).status_code == 404


def test_update_user_invalid_email_is_bad_request(alice):
    assert alice.client.put(f"/api/user/{alice.id}", data={"email": "nope"}).status_code == 400


def test_delete_user_someone_else_is_forbidden(alice, bob):
    assert alice.client.delete(f"/api/user/{bob.id}").status_code == 403
    assert bob.client.get("/api/chats").status_code == 200


def test_delete_user_removes_sessions_and_memberships_but_keeps_messages(app, alice, bob, make_chat, send):
    shared = make_chat(alice, "shared", members=(bob,))
    solo = make_chat(alice, "solo")
    send(alice, shared, "hello from alice")
    send(alice, solo, "talking to myself")
    other_session = new_client(app)
    assert other_session.post("/api/login", data={"name": "alice", "password": alice.password}).status_code == 200

    assert alice.client.delete(f"/api/user/{alice.id}").status_code == 200

    assert other_session.get("/api/chats").status_code == 401
    assert bob.client.get(f"/api/user/{alice.id}").status_code == 404
    messages = bob.client.get(f"/api/chats/{shared}").json()["messages"]
    assert [(m["sender_id"], m["content"]) for m in messages] == [(alice.id, "hello from alice")]
    assert [m["id"] for m in bob.client.get(f"/api/chats/{shared}/members").json()["members"]] == [bob.id]
    assert models.Chat.get_or_none(models.Chat.id == solo) is None
    assert models.Message.select().where(models.Message.chat == solo).count() == 0


def test_deleted_user_id_is_never_reused(client, alice, make_user):
    old_id = alice.id
    assert alice.client.delete(f"/api/user/{alice.id}").status_code == 200
    assert make_user("alice").id > old_id


@pytest.fixture
def sqlite_default_variable_limit(app, monkeypatch):
    """SQLite's default limit of 32,766 bound values per statement; Debian's build raises it to 250,000."""
    database = models.db.obj
    if not isinstance(database, SqliteDatabase):
        return
    checkout = database._connect

    def limited():
        connection = checkout()
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
        return connection

    monkeypatch.setattr(database, "_connect", limited)
    database.close_all()


@pytest.mark.usefixtures("sqlite_default_variable_limit")
def test_delete_user_in_40000_chats(alice, bob, make_chat, send):
    """Leaving that many chats once took one statement with an id per chat, over SQLite's default variable limit."""
    shared = make_chat(alice, "shared", members=(bob,))
    send(bob, shared, "still here")
    _alone_in_chats(alice.id, 40_000)

    assert alice.client.delete(f"/api/user/{alice.id}").status_code == 200

    with models.db.connection_context():
        assert models.Membership.select().where(models.Membership.user == alice.id).count() == 0
        assert [chat.id for chat in models.Chat.select()] == [shared]
        assert models.Message.select().count() == 1
        assert models.DeletedChat.select().count() == 0
    assert [m["content"] for m in bob.client.get(f"/api/chats/{shared}").json()["messages"]] == ["still here"]
    assert [m["id"] for m in bob.client.get(f"/api/chats/{shared}/members").json()["members"]] == [bob.id]


def _alone_in_chats(user_id: int, count: int, rows_per_insert: int = 6000) -> None:
    """Put a user alone in `count` chats, each with one message of theirs, in bulk: rows_per_insert rows a statement,
    under SQLite's default limit of bound values with every column a row binds (Peewee adds the fields' defaults, so
    a membership binds 5 and a message 5)."""
    now = models.utcnow()
    with models.db.connection_context(), models.db.atomic():
        for start in range(0, count, rows_per_insert):
            titles = [("alone", now)] * min(rows_per_insert, count - start)
            chats = models.Chat.insert_many(titles, [models.Chat.title, models.Chat.created_at])
            chat_ids = [chat_id for (chat_id,) in chats.returning(models.Chat.id).tuples().execute()]
            models.Membership.insert_many(
                [(chat_id, user_id, now) for chat_id in chat_ids],
                [models.Membership.chat, models.Membership.user, models.Membership.joined_at],
            ).execute()
            models.Message.insert_many(
                [(chat_id, user_id, "to myself", now) for chat_id in chat_ids],
                [models.Message.chat, models.Message.sender_id, models.Message.content, models.Message.time],
            ).execute()
