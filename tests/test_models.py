"""Models: every hot-path query is served by an index, and requests take a bounded number of queries."""

import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from playhouse.test_utils import assert_query_count, count_queries

from chat_server import models
from chat_server.storage import engines, migrations
from tests.conftest import write_lock_held_by_another_thread

HOT_STATEMENTS = {
    "session lookup": models._SESSION_USER,
    "membership check": models._MEMBERSHIP,
    "chat listing": models._CHAT_LISTING,
    "history, newest first": models._MESSAGES_NEWEST_FIRST,
    "history, oldest first": models._MESSAGES_OLDEST_FIRST,
    "send": models._SEND_MESSAGE,
}


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'plans.db'}"


def query_plan(statement: models.Statement) -> list[str]:
    with models.db.connection_context():
        sql, params = statement._build().sql()
        return [row[-1] for row in models.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]


@pytest.mark.parametrize("name", HOT_STATEMENTS)
def test_hot_query_plan_uses_indexes_only(app, name):
    plan = query_plan(HOT_STATEMENTS[name])
    # "page" is the chat listing's own LIMITed subquery, and "capped" and "mentioning" its LIMITed unread and mention
    # counts': not tables.
    full_scans = [
        step for step in plan if re.match(r"SCAN (?!page$|capped$|mentioning$)(?!.*USING (COVERING )?INDEX)", step)
    ]
    assert not full_scans, plan


def test_chat_listing_plan_reads_only_the_users_chats(app):
    """The caller's session first, by its unique hash. Then a page costs index probes per chat of the user and a
    sort of their keys (activity is computed, so the cursor and the limit cannot use an index); only the page's
    own chats then read their last message, their direct chat's other person (by primary keys), and count their
    unread messages and mentions, index range scans after the read marker that stop at the cap."""
    plan = query_plan(models._CHAT_LISTING)
    assert plan == [
        "CO-ROUTINE page",
        "SEARCH t4 USING INDEX session_token_hash (token_hash=?)",
        # Either index on user_id serves (the unique (user, chat) one, or the foreign key's): the planner picks by
        # the row's width, which joined_by_self, then notify, muted_until and hidden_after changed; the table row is
        # read for last_read_id either way.
        "SEARCH t3 USING INDEX membership_user_id_chat_id (user_id=?)",
        "SEARCH t2 USING INTEGER PRIMARY KEY (rowid=?)",
        "SEARCH newest USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
        "CORRELATED SCALAR SUBQUERY 5",
        # The newest message of the history: MAX(id) walks the index down from the top and stops at the first row
        # that is not a thread reply, which it reads from the table to tell.
        "SEARCH t5 USING INDEX message_chat_id_id (chat_id=?)",
        "USE TEMP B-TREE FOR ORDER BY",
        "SCAN page",
        "SEARCH last USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
        "SEARCH direct USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
        "SEARCH other USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
        "CORRELATED SCALAR SUBQUERY 2",
        "CO-ROUTINE capped",
        "SEARCH unread USING INDEX message_chat_id_id (chat_id=? AND id>?)",
        "SCAN capped",
        "CORRELATED SCALAR SUBQUERY 4",
        "CO-ROUTINE mentioning",
        "SEARCH t1 USING INDEX mention_chat_id_user_id_message_id (chat_id=? AND user_id=? AND message_id>?)",
        "SCAN mentioning",
        "USE TEMP B-TREE FOR ORDER BY",
    ]


def test_statement_rejects_wrong_parameter_count(app):
    with models.db.connection_context(), pytest.raises(TypeError):
        models._SESSION_USER.first("a", "b")


def test_send_message_query_count(alice, make_chat):
    chat_id = make_chat(alice)
    # session, INSERT ... SELECT membership RETURNING, the sender's read marker, the event (BEGIN, COMMIT not counted)
    with assert_query_count(4):
        assert alice.client.post(f"/api/chats/{chat_id}", data={"content": "counted"}).status_code == 201


def test_list_members_query_count_does_not_grow(alice, make_user, make_chat):
    people = tuple(make_user() for _ in range(6))
    chat_id = make_chat(alice, members=people)
    with assert_query_count(3):  # session, membership, members
        assert len(alice.client.get(f"/api/chats/{chat_id}/members").json()["members"]) == 7


def test_write_transactions_hold_the_process_write_lock(app):
    database = models.db.obj
    seen_elsewhere = []
    with models.db.connection_context(), models.db.atomic():
        thread = threading.Thread(target=lambda: seen_elsewhere.append(database.writing_elsewhere()))
        thread.start()
        thread.join()
        assert not database.writing_elsewhere()
    assert seen_elsewhere == [True]
    assert not database._write_lock.locked()


def test_rolled_back_transaction_releases_the_write_lock(app):
    with models.db.connection_context(), pytest.raises(RuntimeError), models.db.atomic():
        raise RuntimeError("abandon the transaction")
    assert not models.db.obj._write_lock.locked()


def test_never_waiting_write_gives_up_while_another_thread_writes(app):
    database = models.db.obj
    with write_lock_held_by_another_thread(), models.db.connection_context():
        with database.never_waiting(), pytest.raises(models.WouldWait), models.db.atomic():
            pytest.fail("the transaction must not start")
        assert models.db.transaction_depth() == 0
        assert database.writing_elsewhere()
    assert not database._write_lock.locked()


def test_never_waiting_write_gives_up_while_another_process_writes(app, tmp_path):
    other = sqlite3.connect(tmp_path / "plans.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with models.db.connection_context():
            with models.db.obj.never_waiting(), pytest.raises(models.WouldWait), models.db.atomic():
                pytest.fail("the transaction must not start")
            assert not models.db.obj._write_lock.locked()
            busy_timeout = models.db.execute_sql("PRAGMA busy_timeout").fetchone()[0]
            assert busy_timeout == engines.SQLITE_PRAGMAS["busy_timeout"]
    finally:
        other.close()


def _chat_with_messages(count: int) -> tuple[int, int]:
    """A user alone in a chat with `count` messages, made by SQLite itself (far faster than sending rows); their ids."""
    with models.db.connection_context():
        user = models.User.create(name="hoarder", email="h@example.com", password_hash="-")
        chat = models.Chat.create_with_member("archive", user.id)
        with models.db.atomic():
            models.db.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO message (chat_id, sender_id, content, time) SELECT ?, ?, 'kept for years', ? FROM n",
                (count, chat.id, user.id, models.utcnow()),
            )
    return user.id, chat.id


def test_leave_chat_with_200k_messages_purges_them_in_batches(app):
    user_id, chat_id = _chat_with_messages(200_000)
    with models.db.connection_context(), count_queries() as queries:
        models.Membership.leave(chat_id, user_id)
        assert models.Message.select().where(models.Message.chat == chat_id).count() == 0
        assert models.Chat.get_or_none(models.Chat.id == chat_id) is None
        assert models.DeletedChat.select().count() == 0
    message_deletes = [q.msg for q in queries.get_queries() if q.msg[0].startswith('DELETE FROM "message"')]
    assert len(message_deletes) >= 200_000 // models.BATCH_ROWS
    assert all(models.BATCH_ROWS in params for _sql, params in message_deletes)


def test_purge_lets_other_writers_in_between_batches(app):
    user_id, chat_id = _chat_with_messages(200_000)
    with models.db.connection_context():
        bystander = models.User.create(name="bystander", email="b@example.com", password_hash="-")
        elsewhere = models.Chat.create_with_member("elsewhere", bystander.id)
    purge = threading.Thread(target=_in_connection, args=(models.Membership.leave, chat_id, user_id))
    purge.start()
    try:
        with models.db.connection_context():
            while models.Message.select().where(models.Message.chat == chat_id).count() == 200_000:
                time.sleep(0.005)
            assert models.Message.send(elsewhere.id, bystander.id, "got in") is not None
            still_purging = models.Message.select().where(models.Message.chat == chat_id).exists()
    finally:
        purge.join()
    assert still_purging


def _in_connection(function, *args):
    with models.db.connection_context():
        function(*args)


def test_interrupted_purge_stays_invisible_and_the_next_purge_finishes_it(alice, make_chat, send, monkeypatch):
    interrupted = make_chat(alice, "interrupted")
    send(alice, interrupted, "left behind")
    with monkeypatch.context() as patch:
        patch.setattr(models.Chat, "purge_deleted", lambda: None)
        assert alice.client.delete("/api/chats", params={"chat_id": interrupted}).status_code == 200
    assert alice.client.get(f"/api/chats/{interrupted}").status_code == 404
    with models.db.connection_context():
        assert models.Message.select().where(models.Message.chat == interrupted).count() == 1

    later = make_chat(alice, "later")
    assert alice.client.delete("/api/chats", params={"chat_id": later}).status_code == 200
    with models.db.connection_context():
        assert models.Message.select().where(models.Message.chat == interrupted).count() == 0
        assert models.Chat.select().where(models.Chat.id.in_([interrupted, later])).count() == 0
        assert models.DeletedChat.select().count() == 0


def test_init_db_adds_columns_an_older_database_lacks(database_url, alice, make_chat):
    chat_id = make_chat(alice)
    with models.db.connection_context():
        models.db.execute_sql("ALTER TABLE membership DROP COLUMN last_read_id")
        models.db.execute_sql(f"DROP TABLE {migrations.TABLE}")  # made before versions were recorded
    models.db.close_all()
    models.init_db(database_url)
    with models.db.connection_context():
        assert "last_read_id" in {column.name for column in models.db.get_columns("membership")}
    assert alice.client.get("/api/chats").json()["chats"][0] == {
        "id": chat_id,
        "title": "general",
        "last_message": None,
        "last_message_time": None,
        "sender_id": None,
        "last_read_id": None,
        "unread_count": 0,
        "kind": "group",
        "mention_count": 0,
        "notify": "all",
        "muted_until": None,
    }


@pytest.mark.parametrize(
    "module", ["chat_server.models", "chat_server.storage.migrations", "chat_server.streams.fanout"]
)
def test_importing_storage_loads_no_web_framework_and_hashes_nothing(module):
    """Below the edge nothing imports connexion, starlette or uvicorn (tox -e lint's contracts say so of the source;
    this says so of what Python loads), and nothing builds a password hasher on import: argon2 stays unloaded."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [name for name in loaded if name.split(".")[0] in ("connexion", "starlette", "uvicorn", "argon2")] == []


@pytest.mark.parametrize("name", ["history, newest first", "history, oldest first"])
def test_history_page_plan_reads_only_the_chats_messages(app, name):
    """A page walks the (chat, id) index of its one chat. The thread index is partial (thread replies only), so the
    page's `thread_root_id IS NULL` can never send the planner down every chat's messages in id order."""
    plan = query_plan(HOT_STATEMENTS[name])
    messages = [step for step in plan if step.startswith(("SEARCH t1 ", "SCAN t1"))]
    assert messages == ["SEARCH t1 USING INDEX message_chat_id_id (chat_id=? AND id>? AND id<?)"], plan
