"""PostgreSQL transactions in fewer round trips (roundtrips.py), and requests that check their session in their own
hop (session_check.py): what is sent, what is kept, and what a failure leaves behind."""

import datetime
import json
import threading

import peewee
import psycopg2
import pytest
from playhouse.test_utils import count_queries

from chat_server import models
from chat_server.core.times import rfc3339
from chat_server.storage.queries import Post, message_created, new_message_json, time_text

from .conftest import fresh_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url():
    return fresh_postgres()


def sent(queries) -> list[str]:
    """The SQL of each round trip a block made (Peewee logs every statement string it sends)."""
    return [record.msg[0] for record in queries.get_queries()]


def events_of_kind(kind: str) -> list[str]:
    with models.db.connection_context():
        return [data for (data,) in models.Event.select(models.Event.data).where(models.Event.kind == kind).tuples()]


def test_a_send_is_two_round_trips(alice, make_chat):
    chat_id = make_chat(alice)
    with count_queries() as queries:
        assert alice.client.post(f"/api/chats/{chat_id}", data={"content": 'counted "é" \\ \n'}).status_code == 201
    session, send = sent(queries)
    assert session.startswith("EXECUTE ")  # the prepared session lookup, in the handler's own hop
    # The chat's and the membership's locks, the event lock, then the insert, read marker, event and notification
    # as one statement: one implicit transaction, with no BEGIN or COMMIT of its own.
    assert send.startswith("SELECT ") and "FOR NO KEY UPDATE; SELECT pg_advisory_xact_lock(" in send
    assert send.count(";") == 3 and "BEGIN" not in send and "COMMIT" not in send
    (message,) = alice.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert message["content"] == 'counted "é" \\ \n'
    chats = alice.client.get("/api/chats").json()["chats"]
    assert chats[0]["last_read_id"] == message["id"] and chats[0]["unread_count"] == 0
    # The event built in SQL is the one Event.record would have written.
    (data,) = events_of_kind(models.MESSAGE_CREATED)
    assert json.loads(data) == message_created(chat_id, message)


def test_a_reply_in_a_thread_with_mentions_builds_its_event_in_sql_as_python_does(app, alice, bob, make_chat):
    """The send's SQL writes the reply's quote (a parameter), the thread's root and the mentions into the event as
    new_message_json() shows them; the text and the quote carry characters JSON escapes."""
    chat_id = make_chat(alice, members=(bob,))
    quoted, content = 'the "root" é \\ \n', 'for @bob and @all: "é" \\ \n'
    with models.db.connection_context():
        root = models.Message.send(chat_id, bob.id, quoted)
        post = Post(
            reply_to_id=root,
            reply_to_sender_id=bob.id,
            snippet=quoted,
            thread_root_id=root,
            mentions=[bob.id, alice.id],
            mentions_all=True,
        )
        message_id = models.Message.send(chat_id, alice.id, content, post=post)
        time = models.Message.get_by_id(message_id).time
    (_, data) = events_of_kind(models.MESSAGE_CREATED)
    event = json.loads(data)
    assert event == message_created(chat_id, new_message_json(message_id, content, alice.id, time, None, post))
    assert event["message"]["reply_to"] == {"id": root, "sender_id": bob.id, "snippet": quoted, "deleted": False}


def test_a_reply_in_a_thread_sent_through_the_api_has_the_event_its_message_shows(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    root = send(bob, chat_id, "the root")
    sent = alice.client.post(
        f"/api/chats/{chat_id}", data={"content": "@bob @all", "reply_to": root, "thread_root_id": root}
    )
    assert sent.status_code == 201, sent.text
    message = alice.client.get(f"/api/chats/{chat_id}/messages/{sent.json()['id']}").json()
    assert (message["thread_root_id"], message["mentions"], message["mentions_all"]) == (root, [bob.id], True)
    (_, data) = events_of_kind(models.MESSAGE_CREATED)
    assert json.loads(data) == message_created(chat_id, message)


@pytest.mark.parametrize("microsecond", [0, 5, 999_999])
def test_a_sent_time_in_sql_reads_as_rfc3339_does(app, microsecond):
    time = datetime.datetime(2026, 11, 27, 9, 8, 7, microsecond)
    formatted, _ = models.db.obj.get_sql_context().sql(time_text(peewee.SQL('"sent"."time"'), rfc3339=True)).query()
    query = f"SELECT {formatted} FROM (SELECT %s::timestamp AS time) AS sent"
    with models.db.connection_context():
        (text,) = models.db.execute_sql(query, (time,)).fetchone()
    assert text == rfc3339(time)


def test_a_send_inside_a_transaction_commits_with_it(app, alice, make_chat):
    chat_id = make_chat(alice)
    with models.db.connection_context(), pytest.raises(RuntimeError), models.db.atomic():
        assert models.Message.send(chat_id, alice.id, "rolled back") is not None
        raise RuntimeError("abandon")
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"] == []
    assert events_of_kind(models.MESSAGE_CREATED) == []


def test_a_transaction_that_ran_nothing_sends_nothing(app):
    with models.db.connection_context():
        with count_queries() as queries, models.db.atomic():
            pass
        assert sent(queries) == []
        connection = models.db.connection()
        assert connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_statements_queued_in_a_rolled_back_savepoint_are_dropped(app):
    with models.db.connection_context(), models.db.atomic():
        models.Event.record(models.CHAT_RENAMED, 1, {"title": "kept"})
        with pytest.raises(RuntimeError), models.db.atomic():
            models.Event.record(models.CHAT_RENAMED, 1, {"title": "dropped"})
            raise RuntimeError("roll back to the savepoint")
        with models.db.atomic():
            models.Event.record(models.CHAT_RENAMED, 1, {"title": "released"})
    assert events_of_kind(models.CHAT_RENAMED) == ['{"title": "kept"}', '{"title": "released"}']


def test_a_rolled_back_transaction_drops_its_queued_statements(app):
    with models.db.connection_context(), pytest.raises(RuntimeError), models.db.atomic():
        models.Chat.create(title="never")
        models.Event.record(models.CHAT_RENAMED, 1, {"title": "never"})
        raise RuntimeError("abandon")
    assert events_of_kind(models.CHAT_RENAMED) == []
    with models.db.connection_context():
        assert models.Chat.select().count() == 0


def test_outside_a_transaction_a_queued_statement_runs_at_once(app):
    with models.db.connection_context():
        models.db.obj.at_commit("INSERT INTO prunedevents (id, through) VALUES (%s, %s)", (1, 7))
        assert models.Event.pruned_through() == 7


def test_a_failing_commit_rolls_the_whole_transaction_back(app):
    with models.db.connection_context():
        with pytest.raises(peewee.IntegrityError), models.db.atomic():
            models.Chat.create(title="half")
            models.db.obj.at_commit("INSERT INTO prunedevents (id, through) VALUES (%s, %s)", (1, 7))
            models.db.obj.at_commit("INSERT INTO prunedevents (id, through) VALUES (%s, %s)", (1, 8))
        # Nothing of it is left, and the connection is ready for the next transaction.
        assert models.Chat.select().count() == 0 and models.Event.pruned_through() == 0
        with models.db.atomic():
            models.Chat.create(title="whole")
        assert [chat.title for chat in models.Chat.select()] == ["whole"]


def test_the_hot_reads_are_one_round_trip_each(alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "one")
    for path in (f"/api/chats/{chat_id}", "/api/chats"):
        with count_queries() as queries:
            assert alice.client.get(path).status_code == 200
        (query,) = sent(queries)  # it checks the session (and the membership) itself
        assert query.startswith("EXECUTE ")  # prepared once per connection


def test_a_send_waits_for_its_membership_before_the_event_lock(app, database_url, alice, make_chat):
    """mark_read updates the member's row, then takes the event lock at its commit. A send must meet that row
    before the event lock too: holding the event lock while it waits for the row, it and a mark-read of the same
    member would wait for each other until PostgreSQL aborted one."""
    chat_id = make_chat(alice)
    reader = psycopg2.connect(database_url)  # this xdist worker's database, as the app's
    watcher = psycopg2.connect(database_url)
    watcher.autocommit = True
    try:
        with reader.cursor() as cursor:  # a mark-read's first statement, its transaction left open
            cursor.execute(
                "UPDATE membership SET last_read_id = last_read_id WHERE user_id = %s AND chat_id = %s",
                (alice.id, chat_id),
            )
        answers = []
        sender = threading.Thread(
            target=lambda: answers.append(alice.client.post(f"/api/chats/{chat_id}", data={"content": "waits"}))
        )
        sender.start()
        with watcher.cursor() as cursor:
            for _ in range(200):
                # Only this database's sessions: another server may be busy on another database of this PostgreSQL.
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                if cursor.fetchone()[0]:
                    break
                sender.join(0.05)
            else:
                pytest.fail("the send never waited for the member's row")
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (models.EVENT_LOCK_KEY,),
            )
            assert cursor.fetchone()[0] == 0, "the send holds the event lock while it waits for the member's row"
        with reader.cursor() as cursor:  # the mark-read's commit takes the event lock at once
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (models.EVENT_LOCK_KEY,))
        reader.commit()
        sender.join(30)
        assert [answer.status_code for answer in answers] == [201]
    finally:
        reader.close()
        watcher.close()


@pytest.mark.parametrize("microsecond", [0, 5, 999_999])
def test_the_hot_reads_format_times_as_rfc3339_does(app, alice, make_chat, microsecond):
    """History and the chat list have PostgreSQL format their times (storage/queries.py, time_as_stored)."""
    chat_id = make_chat(alice)
    time = datetime.datetime(2026, 11, 27, 9, 8, 7, microsecond)
    with models.db.connection_context():
        message_id = models.Message.insert(
            chat=chat_id, sender_id=alice.id, content="hi", time=time, edited_at=time
        ).execute()
    (message,) = alice.client.get(f"/api/chats/{chat_id}").json()["messages"]
    expected = rfc3339(time)
    assert message == {
        "id": message_id, "content": "hi", "sender_id": alice.id, "time": expected, "edited_at": expected,
        "attachments": [], "reply_to": None, "thread_root_id": None, "thread": None, "reactions": [], "mentions": [],
        "mentions_all": False,
    }  # fmt: skip
    (chat,) = alice.client.get("/api/chats").json()["chats"]
    assert chat["last_message_time"] == rfc3339(time)
