"""PostgreSQL transactions in fewer round trips (roundtrips.py), and requests that check their session in their own
hop (session_check.py): what is sent, what is kept, and what a failure leaves behind."""

import peewee
import psycopg2
import pytest
from playhouse.test_utils import count_queries

from chat_server import models

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


def test_a_send_is_three_round_trips(alice, make_chat):
    chat_id = make_chat(alice)
    with count_queries() as queries:
        assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "counted"}).status_code == 201
    session, send, commit = sent(queries)
    assert session.startswith("EXECUTE ")  # the prepared session lookup, in the handler's own hop
    # BEGIN, the chat's lock and the insert that moves the read marker go together ...
    assert send.startswith("BEGIN; SELECT ") and "FOR NO KEY UPDATE; WITH " in send
    # ... and the event, its lock and its notification go with the COMMIT.
    assert send.count(";") == 2 and commit.startswith("SELECT pg_advisory_xact_lock(") and commit.endswith("; COMMIT")
    history = alice.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert [message["content"] for message in history] == ["counted"]
    chats = alice.client.get("/api/chats").json()["chats"]
    assert chats[0]["last_read_id"] == history[0]["id"] and chats[0]["unread_count"] == 0
    assert len(events_of_kind(models.MESSAGE_CREATED)) == 1


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
