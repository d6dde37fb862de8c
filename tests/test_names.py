"""Look-alike user names: one name however it is cased, widened, spelled in look-alike letters or padded with
invisible characters (names.py), on registration, rename, login and look-up, and in databases from before."""

import logging
import sys
import threading
import unicodedata

import pytest

from chat_server import models
from chat_server.accounts import passwords
from chat_server.app import create_app
from chat_server.core import names
from chat_server.storage import migrations
from tests.conftest import SPEC_DOC, new_client

LOOK_ALIKES = [
    "Alice",
    "ALICE",
    "\uff41\uff4c\uff49\uff43\uff45",  # full-width
    "\u0430lice",  # Cyrillic a
    "al\u200bice",  # zero-width space
    "alice ",
    "alice\u202e",  # right-to-left override
    "ali\r\nce",
    "alice\x07",
    "a1ice",
]


def register(client, name: str):
    return client.post("/api/user/0", data={"name": name, "password": "correct horse", "email": "x@example.com"})


def shown_name(person, user_id: int) -> str:
    return person.client.get(f"/api/user/{user_id}").json()["user"]["name"]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_register_user_look_alike_of_taken_name_is_conflict(client, alice, name):
    response = register(client, name)
    assert response.status_code == 409
    assert response.json() == {"error": "that name is taken"}


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_update_user_to_look_alike_of_taken_name_is_conflict(alice, bob, name):
    response = bob.client.put(f"/api/user/{bob.id}", data={"name": name})
    assert response.status_code == 409
    assert shown_name(bob, bob.id) == "bob"


@pytest.mark.parametrize("taken, other", [("zoë", "zoe\u0308"), ("zoe\u0308", "zoë")])
def test_register_user_other_normalization_form_is_conflict(app, client, taken, other):
    assert register(new_client(app), taken).status_code == 201
    assert register(client, other).status_code == 409


def test_update_user_own_name_in_other_case_changes_display(alice):
    assert alice.client.put(f"/api/user/{alice.id}", data={"name": "ALICE"}).status_code == 200
    assert shown_name(alice, alice.id) == "ALICE"


def test_register_user_keeps_case_as_typed(make_user):
    person = make_user("Alice")
    assert shown_name(person, person.id) == "Alice"


def test_register_user_stores_name_without_invisible_characters_and_spaces(app, client):
    person = new_client(app)
    user_id = register(person, "bo\u200bb ").json()["id"]
    assert person.get(f"/api/user/{user_id}").json()["user"]["name"] == "bob"
    assert client.post("/api/login", data={"name": "bob", "password": "correct horse"}).json()["id"] == user_id


def test_update_user_stores_name_without_invisible_characters_and_spaces(alice):
    assert alice.client.put(f"/api/user/{alice.id}", data={"name": " \u202eAli\u00adcia\t"}).status_code == 200
    assert shown_name(alice, alice.id) == "Alicia"


def test_login_by_look_alike(client, alice):
    response = client.post("/api/login", data={"name": "ALICE", "password": alice.password})
    assert response.status_code == 200
    assert response.json()["id"] == alice.id


def test_get_user_by_look_alike_name(alice, bob):
    response = bob.client.get("/api/user/0", params={"name": "\uff21\uff2c\uff29\uff23\uff25"})
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id


def test_add_member_by_look_alike_name(alice, bob, make_chat):
    make_chat(bob, "contacts", members=(alice,))
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"name": "BOB"}).status_code == 201
    members = alice.client.get(f"/api/chats/{chat_id}/members").json()["members"]
    assert [member["name"] for member in members] == ["alice", "bob"]


def test_register_user_concurrent_look_alikes_make_one_account(app):
    variants = ["Zed", "zed", "ZED", "zEd", "ZeD", "\uff5a\uff45\uff44", "z\u0435d", "zed "]
    clients = [new_client(app) for _ in variants]
    barrier = threading.Barrier(len(variants))
    statuses = []

    def register_one(client, name):
        barrier.wait()
        statuses.append(register(client, name).status_code)

    threads = [threading.Thread(target=register_one, args=pair) for pair in zip(clients, variants, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [409] * 7
    with models.db.connection_context():
        assert models.User.select().where(models.User.name_key == "zed").count() == 1


def test_init_db_keys_legacy_names_and_keeps_look_alike_duplicates(database_url, caplog):
    """A database from before name keys, with `alice` and a later `Alice`: both still log in by their exact names,
    `Alice` keeps no key (and is logged), and no third look-alike gets in."""
    old = create_app(database_url, password_profile="cheapest")
    founder = new_client(old)
    assert register(founder, "alice").status_code == 201
    chat_id = founder.post("/api/chats", data={"title": "before"}).json()["id"]
    assert founder.post(f"/api/chats/{chat_id}", data={"content": "hello"}).status_code == 201
    with models.db.connection_context():
        models.db.execute_sql("DROP INDEX user_name_key")
        models.db.execute_sql('ALTER TABLE "user" DROP COLUMN name_key')
        models.db.execute_sql(f"DROP TABLE {migrations.TABLE}")  # made before versions were recorded
        legacy_id = models.User.insert(
            name="Alice", email="a@example.com", password_hash=passwords.hasher().hash("other horse")
        ).execute()
    models.db.close_all()

    with caplog.at_level(logging.WARNING, logger="chat"):
        app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    try:
        assert f"{legacy_id} looks like" in caplog.text
        alice, legacy = new_client(app), new_client(app)
        assert alice.post("/api/login", data={"name": "alice", "password": "correct horse"}).json()["id"] != legacy_id
        assert legacy.post("/api/login", data={"name": "Alice", "password": "other horse"}).json()["id"] == legacy_id
        assert register(new_client(app), "ALICE").status_code == 409
        assert [m["content"] for m in alice.get(f"/api/chats/{chat_id}").json()["messages"]] == ["hello"]
        assert legacy.put(f"/api/user/{legacy_id}", data={"name": "Alice B"}).status_code == 200
        with models.db.connection_context():
            assert models.User.get_by_id(legacy_id).name_key == "alice b"
    finally:
        models.db.close_all()


def test_invisible_characters_are_the_user_name_patterns():
    """The code strips exactly what the contract calls invisible."""
    assert f"[^\\s{names.INVISIBLE}]" in SPEC_DOC["components"]["schemas"]["UserName"]["pattern"]
    assert SPEC_DOC["components"]["schemas"]["UserName"]["maxLength"] == names.MAX_LENGTH


def test_key_expansion_bounds_every_character():
    """No character's key is longer than KEY_EXPANSION characters, so no 64-character name outgrows the column."""
    longest = 0
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        key = None if unicodedata.category(char) in ("Cs", "Cn") else names.lookup_key(char)
        longest = max(longest, len(key or ""))
    assert longest == names.KEY_EXPANSION


def test_confusables_table_is_unicodes():
    header = names.CONFUSABLES.read_text(encoding="utf-8").splitlines()[:12]
    assert "# Version: 13.0.0" in header
    assert any("unicode.org/terms_of_use" in line for line in header)
    assert names.confusables()["\u0430"] == "a"
