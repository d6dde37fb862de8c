"""Versioned migrations (migrations.py): a database from an earlier version upgrades in place, an up-to-date one is
left alone, processes migrating at once take turns, and the result is the schema create_tables makes today."""

import datetime
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from peewee import SqliteDatabase, Table
from playhouse.test_utils import count_queries

from chat_server import models
from chat_server.accounts.passwords import Passwords
from chat_server.app import create_app
from chat_server.storage import migrations

from .conftest import fresh_postgres, new_client
from .live_server import chat_server_command

EARLIER = datetime.datetime(2026, 1, 2, 3, 4, 5)


def schema_of(database) -> dict:
    """Every table's columns (type, nullability, key, default), indexes, foreign keys and, on SQLite, AUTOINCREMENT;
    the migrations table aside, since create_tables does not make it."""
    schema = {}
    with database.connection_context():
        for table in database.get_tables():
            if table == migrations.TABLE:
                continue
            schema[table] = {
                "columns": {
                    column.name: (column.full_type, column.null, column.primary_key, column.default)
                    for column in database.get_columns(table)
                },
                "indexes": {index.name: (tuple(index.columns), index.unique) for index in database.get_indexes(table)},
                "foreign keys": {
                    (key.column, key.dest_table, key.dest_column, key.name, key.on_delete)
                    for key in database.get_foreign_keys(table)
                },
                "autoincrement": isinstance(database, SqliteDatabase) and _table_sql(database, table),
            }
    return schema


def _table_sql(database, table: str) -> bool:
    (sql,) = database.execute_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return "AUTOINCREMENT" in sql


def create_tables_schema(database_url: str, tmp_path: Path) -> dict:
    """The schema db.create_tables(MODELS) makes today, in a second SQLite file or the emptied PostgreSQL database."""
    url = f"sqlite:///{tmp_path / 'reference.db'}" if database_url.startswith("sqlite") else fresh_postgres()
    database = models.connect(url)
    models.db.initialize(database)
    try:
        with database.connection_context():
            models.db.create_tables(models.MODELS)
        return schema_of(database)
    finally:
        database.close_all()


def history(database) -> list[tuple]:
    with database.connection_context():
        return database.execute_sql(f"SELECT version, name, applied_at FROM {migrations.TABLE} ORDER BY 1").fetchall()


@pytest.fixture
def database(database_url):
    database = models.connect(database_url)
    yield database
    database.close_all()


@pytest.fixture
def version_1(database):
    """A database at version 1, as the server made it before the event log: alice, bob, and `Alice`, whose name
    looks like alice's now; a chat of the three where bob wrote last."""
    assert [migration.version for migration in migrations.upgrade(database, to=1)] == [1]
    hashes = Passwords("cheapest")
    user = Table("user", ("id", "name", "email", "password_hash"), primary_key="id").bind(database)
    chat = Table("chat", ("id", "title", "created_at"), primary_key="id").bind(database)
    membership = Table("membership", ("id", "chat_id", "user_id", "joined_at"), primary_key="id").bind(database)
    message = Table("message", ("id", "chat_id", "sender_id", "content", "time"), primary_key="id").bind(database)
    with database.connection_context():
        ids = {
            name: user.insert(name=name, email=f"{name}@example.com", password_hash=hashes.hash(password)).execute()
            for name, password in (("alice", "correct horse"), ("bob", "battery staple"), ("Alice", "other horse"))
        }
        ids["chat"] = chat.insert(title="before", created_at=EARLIER).execute()
        for name in ("alice", "bob", "Alice"):
            membership.insert(chat_id=ids["chat"], user_id=ids[name], joined_at=EARLIER).execute()
        for offset, (sender, content) in enumerate((("alice", "hello"), ("bob", "hi"), ("bob", "still there?"))):
            time = EARLIER + datetime.timedelta(minutes=offset)
            message.insert(chat_id=ids["chat"], sender_id=ids[sender], content=content, time=time).execute()
    database.close_all()
    return ids


@pytest.fixture
def upgraded(version_1, database_url):
    """The version-1 database, upgraded by the app's start."""
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    yield app
    models.db.close_all()


def login(app, name: str, password: str):
    client = new_client(app)
    response = client.post("/api/login", data={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return client, response.json()["id"]


def test_upgrade_from_version_1_runs_the_rest_and_names_look_alike_accounts(version_1, database, caplog):
    with caplog.at_level(logging.WARNING, logger="chat"):
        applied = migrations.upgrade(database)
    assert [str(migration) for migration in applied] == [str(migration) for migration in migrations.MIGRATIONS[1:]]
    assert [(version, name) for version, name, _ in history(database)] == [
        (migration.version, migration.name) for migration in migrations.MIGRATIONS
    ]
    assert f"{version_1['Alice']} looks like {version_1['alice']}" in caplog.text


def test_upgrade_from_version_1_keeps_both_look_alike_accounts(version_1, upgraded):
    assert login(upgraded, "alice", "correct horse")[1] == version_1["alice"]
    assert login(upgraded, "Alice", "other horse")[1] == version_1["Alice"]
    register = new_client(upgraded).post(
        "/api/user/0", data={"name": "ALICE", "password": "correct horse", "email": "x@example.com"}
    )
    assert register.status_code == 409


def test_upgrade_from_version_1_lists_chats_with_last_message_and_unread_count(version_1, upgraded):
    alice, _ = login(upgraded, "alice", "correct horse")
    listed = alice.get("/api/chats").json()["chats"]
    assert listed == [
        {
            "id": version_1["chat"],
            "title": "before",
            "last_message": "still there?",
            "last_message_time": "2026-01-02T03:06:05Z",
            "sender_id": version_1["bob"],
            "last_read_id": None,
            "unread_count": 2,
            "kind": "group",
            "mention_count": 0,
            "notify": "all",
            "muted_until": None,
        }
    ]


def test_upgrade_from_version_1_reads_history_sends_and_streams_events(version_1, upgraded):
    alice, _ = login(upgraded, "alice", "correct horse")
    bob, _ = login(upgraded, "bob", "battery staple")
    history_page = alice.get(f"/api/chats/{version_1['chat']}").json()["messages"]
    assert [message["content"] for message in history_page] == ["hello", "hi", "still there?"]
    start = bob.get("/api/events", headers={"Accept": "application/json"}).json()["last_event_id"]

    sent = alice.post(f"/api/chats/{version_1['chat']}", data={"content": "back now"})

    assert sent.status_code == 201
    batch = bob.get("/api/events", params={"last_event_id": start}, headers={"Accept": "application/json"}).json()
    assert [(event["type"], event["data"]["message"]["content"]) for event in batch["events"]] == [
        ("message.created", "back now")
    ]
    assert alice.get("/api/chats").json()["chats"][0]["unread_count"] == 0


def test_upgrade_from_version_1_searches_and_edits_the_messages_it_had(version_1, upgraded):
    alice, _ = login(upgraded, "alice", "correct horse")
    bob, _ = login(upgraded, "bob", "battery staple")
    chat_id = version_1["chat"]
    (still,) = alice.get("/api/search", params={"q": "there"}).json()["messages"]
    assert (still["content"], still["chat_id"], still["edited_at"]) == ("still there?", chat_id, None)

    edited = bob.put(f"/api/chats/{chat_id}/messages/{still['id']}", data={"content": "still here?"})

    assert edited.status_code == 200 and edited.json()["edited_at"] is not None
    assert [m["content"] for m in alice.get("/api/search", params={"q": "still"}).json()["messages"]] == ["still here?"]


def test_upgrade_from_version_1_makes_only_each_chats_creator_a_contact_of_its_members(version_1, upgraded):
    """The chat's first member, who joined as it was made, created it; the others were added, so they are nobody's
    contacts: their email stays hidden, and adding them elsewhere invites them."""
    alice, _ = login(upgraded, "alice", "correct horse")
    bob, _ = login(upgraded, "bob", "battery staple")

    assert bob.get(f"/api/user/{version_1['alice']}").json()["user"]["email"] == "alice@example.com"
    assert alice.get(f"/api/user/{version_1['bob']}").json()["user"]["email"] is None
    chat_id = alice.post("/api/chats", data={"title": "after"}).json()["id"]
    assert alice.post(f"/api/chats/{chat_id}/members", data={"user_id": version_1["bob"]}).status_code == 202
    assert bob.get(f"/api/user/{version_1['bob']}").json()["user"]["who_can_add_me"] == "contacts"


def test_upgrade_to_version_4_gives_the_events_of_sent_messages_their_edited_at(database):
    """A message.created event recorded at version 3, before `edited_at`, reads as the Message schema says."""
    migrations.upgrade(database, to=3)
    event = Table("event", ("id", "kind", "chat_id", "data", "time")).bind(database)
    old = {"chat_id": 1, "message": {"id": 7, "content": "hi", "sender_id": 2, "time": "2026-01-02T03:04:05Z"}}
    with database.connection_context():
        event.insert(kind="message.created", chat_id=1, data=json.dumps(old), time=EARLIER).execute()
        event.insert(kind="chat.renamed", chat_id=1, data='{"chat_id": 1, "title": "t"}', time=EARLIER).execute()

    migrations.upgrade(database, to=4)

    with database.connection_context():
        rows = [json.loads(data) for (data,) in event.select(event.data).order_by(event.id).tuples()]
    assert rows == [{**old, "message": {**old["message"], "edited_at": None}}, {"chat_id": 1, "title": "t"}]


def test_upgrade_to_version_6_gives_the_messages_of_recorded_events_no_attachments(database):
    """A message.created or message.edited event recorded at version 5, before files, reads as the Message schema
    says: with `attachments: []`; other events are left as they were."""
    migrations.upgrade(database, to=5)
    event = Table("event", ("id", "kind", "chat_id", "data", "time")).bind(database)
    message = {"id": 7, "content": "hi", "sender_id": 2, "time": "2026-01-02T03:04:05Z", "edited_at": None}
    with database.connection_context():
        for kind in ("message.created", "message.edited"):
            event.insert(
                kind=kind, chat_id=1, data=json.dumps({"chat_id": 1, "message": message}), time=EARLIER
            ).execute()
        event.insert(kind="chat.renamed", chat_id=1, data='{"chat_id": 1, "title": "t"}', time=EARLIER).execute()

    migrations.upgrade(database, to=6)

    with database.connection_context():
        rows = [json.loads(data) for (data,) in event.select(event.data).order_by(event.id).tuples()]
    with_files = {"chat_id": 1, "message": {**message, "attachments": []}}
    assert rows == [with_files, with_files, {"chat_id": 1, "title": "t"}]


def test_upgrade_to_version_7_gives_the_messages_of_recorded_events_their_empty_conversation_fields(database):
    """A message.created or message.edited event recorded at version 6, before replies, threads, reactions and
    mentions, reads as the Message schema says: with none of them; other events are left as they were."""
    migrations.upgrade(database, to=6)
    event = Table("event", ("id", "kind", "chat_id", "data", "time")).bind(database)
    message = {
        "id": 7, "content": "hi", "sender_id": 2, "time": "2026-01-02T03:04:05Z", "edited_at": None, "attachments": [],
    }  # fmt: skip
    with database.connection_context():
        for kind in ("message.created", "message.edited"):
            event.insert(
                kind=kind, chat_id=1, data=json.dumps({"chat_id": 1, "message": message}), time=EARLIER
            ).execute()
        event.insert(kind="chat.renamed", chat_id=1, data='{"chat_id": 1, "title": "t"}', time=EARLIER).execute()

    migrations.upgrade(database, to=7)

    with database.connection_context():
        rows = [json.loads(data) for (data,) in event.select(event.data).order_by(event.id).tuples()]
    empty = {
        "reply_to": None,
        "thread_root_id": None,
        "thread": None,
        "reactions": [],
        "mentions": [],
        "mentions_all": False,
    }
    conversing = {"chat_id": 1, "message": {**message, **empty}}
    assert rows == [conversing, conversing, {"chat_id": 1, "title": "t"}]


@pytest.fixture
def upgraded_from_version_6(version_1, database, database_url):
    """The version-1 database, upgraded to version 6 (the release before replies, threads, reactions, mentions,
    pins and direct chats), then by the app's start."""
    migrations.upgrade(database, to=6)
    database.close_all()
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    yield app
    models.db.close_all()


def test_upgrade_from_version_6_shows_the_old_messages_and_chats_without_conversation(
    version_1, upgraded_from_version_6
):
    alice, _ = login(upgraded_from_version_6, "alice", "correct horse")
    chat_id = version_1["chat"]
    messages = alice.get(f"/api/chats/{chat_id}").json()["messages"]
    assert [
        (m["reply_to"], m["thread_root_id"], m["thread"], m["reactions"], m["mentions"], m["mentions_all"])
        for m in messages
    ] == [(None, None, None, [], [], False)] * 3
    (chat,) = alice.get("/api/chats").json()["chats"]
    assert (chat["kind"], chat["mention_count"], chat["notify"], chat["muted_until"]) == ("group", 0, "all", None)
    assert alice.get(f"/api/chats/{chat_id}/settings").json() == {"notify": "all", "muted_until": None}


def test_upgrade_from_version_6_reacts_to_replies_to_and_pins_the_old_messages(version_1, upgraded_from_version_6):
    alice, _ = login(upgraded_from_version_6, "alice", "correct horse")
    bob, _ = login(upgraded_from_version_6, "bob", "battery staple")
    chat_id = version_1["chat"]
    hello, _, still = [m["id"] for m in alice.get(f"/api/chats/{chat_id}").json()["messages"]]

    reacted = bob.put(f"/api/chats/{chat_id}/messages/{hello}/reactions/👍")
    replied = alice.post(
        f"/api/chats/{chat_id}", data={"content": "yes, @bob", "thread_root_id": still, "reply_to": still}
    )
    pinned = bob.put(f"/api/chats/{chat_id}/pins/{hello}")

    assert reacted.status_code == 200 and reacted.json()["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
    assert replied.status_code == 201, replied.text
    reply = alice.get(f"/api/chats/{chat_id}/messages/{replied.json()['id']}").json()
    quoted = {"id": still, "sender_id": version_1["bob"], "snippet": "still there?", "deleted": False}
    assert (reply["reply_to"], reply["thread_root_id"], reply["mentions"]) == (quoted, still, [version_1["bob"]])
    assert alice.get(f"/api/chats/{chat_id}/messages/{still}").json()["thread"]["reply_count"] == 1
    assert pinned.status_code == 200
    assert [pin["message"]["id"] for pin in alice.get(f"/api/chats/{chat_id}/pins").json()["pins"]] == [hello]


def test_upgrade_from_version_6_opens_a_direct_chat_between_old_accounts(version_1, upgraded_from_version_6):
    """bob shares alice's chat, which she made: she is his contact, so he may write to her directly."""
    bob, _ = login(upgraded_from_version_6, "bob", "battery staple")
    opened = bob.post(f"/api/direct/{version_1['alice']}")
    assert opened.status_code == 201, opened.text
    assert bob.post(f"/api/direct/{version_1['alice']}").json()["id"] == opened.json()["id"]
    listed = {chat["id"]: (chat["kind"], chat["title"]) for chat in bob.get("/api/chats").json()["chats"]}
    assert listed[opened.json()["id"]] == ("direct", "alice")


def test_upgrade_of_an_up_to_date_database_runs_nothing(database):
    migrations.upgrade(database)
    schema, recorded = schema_of(database), history(database)

    with count_queries() as queries:
        applied = migrations.upgrade(database)

    assert applied == []
    assert [query.msg[0].split()[0] for query in queries.get_queries()] == ["SELECT", "SELECT"]
    assert schema_of(database) == schema
    assert history(database) == recorded


def test_upgrade_records_a_database_from_before_the_migrations_table(database):
    """A database that create_tables made, before versions were recorded: every step finds its work done."""
    models.db.initialize(database)
    with database.connection_context():
        models.db.create_tables(models.MODELS)
    schema = schema_of(database)

    assert len(migrations.upgrade(database)) == migrations.LATEST

    assert schema_of(database) == schema
    assert [version for version, _, _ in history(database)] == list(range(1, migrations.LATEST + 1))


def test_migrated_schema_is_the_one_create_tables_makes(database, database_url, tmp_path):
    migrations.upgrade(database)
    migrated = schema_of(database)
    database.close_all()

    assert migrated == create_tables_schema(database_url, tmp_path)


def test_two_processes_migrating_at_once_apply_each_migration_once(database, database_url, tmp_path):
    command = [*chat_server_command(), "migrate", "--database", database_url]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    reported = [int(version) for stdout, _ in outputs for version in re.findall(r"(?:: |, )(\d+) ", stdout)]
    assert sorted(reported) == list(range(1, migrations.LATEST + 1)), outputs
    assert [version for version, _, _ in history(database)] == list(range(1, migrations.LATEST + 1))
    migrated = schema_of(database)
    database.close_all()
    assert migrated == create_tables_schema(database_url, tmp_path)


def test_migrate_command_says_when_the_database_is_up_to_date(database, database_url):
    migrations.upgrade(database)
    printed = subprocess.run(
        [*chat_server_command(), "migrate", "--database", database_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert printed.stdout == f"up to date at version {migrations.LATEST}\n"


def test_no_migrate_refuses_a_database_that_is_behind(version_1, database_url):
    # A server that does not refuse would serve on: the timeout fails the test instead of hanging the run.
    refused = subprocess.run(
        [*chat_server_command(), "--no-migrate", "--database", database_url], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert f"the database is at schema version 1 and this server needs version {migrations.LATEST}" in refused.stderr
    assert "chat-server migrate" in refused.stderr


def test_create_app_without_migrating_refuses_a_database_that_is_behind(version_1, database_url, monkeypatch):
    monkeypatch.setenv("CHAT_MIGRATE", "0")
    with pytest.raises(migrations.SchemaBehind, match="chat-server migrate"):
        create_app(database_url, password_profile="cheapest")
    models.db.close_all()
