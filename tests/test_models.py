"""Models: every hot-path query is served by an index, and requests take a bounded number of queries."""

import re
import threading

import pytest
from playhouse.test_utils import assert_query_count

from chat_server import models

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


@pytest.mark.parametrize("name", HOT_STATEMENTS)
def test_hot_query_plan_uses_indexes_only(app, name):
    statement = HOT_STATEMENTS[name]
    with models.db.connection_context():
        sql, params = statement._build().sql()
        plan = [row[-1] for row in models.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
    full_scans = [step for step in plan if re.match(r"SCAN (?!.*USING (COVERING )?INDEX)", step)]
    assert not full_scans, plan


def test_statement_rejects_wrong_parameter_count(app):
    with models.db.connection_context(), pytest.raises(TypeError):
        models._SESSION_USER.first("a", "b")


def test_send_message_query_count(alice, make_chat):
    chat_id = make_chat(alice)
    with assert_query_count(2):  # session, INSERT ... SELECT membership RETURNING (BEGIN, COMMIT not counted)
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
