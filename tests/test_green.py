"""PostgreSQL on the event loop (storage/green.py): a request waiting for PostgreSQL does not hold up the others."""

import threading

import httpx
import psycopg2
import pytest

from chat_server.models import EVENT_LOCK_KEY

from .conftest import fresh_postgres
from .live_server import live_server


def waiting_for_advisory_lock(admin) -> bool:
    with admin.cursor() as cursor:
        # Only this database's: another server may be busy on another database of this PostgreSQL.
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.postgres
def test_a_request_waiting_for_postgresql_leaves_the_event_loop_to_the_others():
    url = fresh_postgres()
    with live_server("--database", url) as server, httpx.Client(base_url=server.api_url, timeout=30) as alice:
        form = {"name": "alice", "password": "correct horse", "email": "alice@example.com"}
        assert alice.post("/user/0", data=form).status_code == 201
        chat_id = alice.post("/chats", data={"title": "general"}).json()["id"]
        admin = psycopg2.connect(url)
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                # Every send records its event under this lock (models.Event.record): hold it, and a send waits.
                cursor.execute("SELECT pg_advisory_lock(%s)", (EVENT_LOCK_KEY,))
            answers = []
            sender = threading.Thread(
                target=lambda: answers.append(alice.post(f"/chats/{chat_id}", data={"content": "held up"}))
            )
            sender.start()
            for _ in range(200):
                if waiting_for_advisory_lock(admin):
                    break
                sender.join(0.05)
            assert waiting_for_advisory_lock(admin), "the send never reached the lock"
            # The one worker's event loop still serves everyone else meanwhile.
            with httpx.Client(base_url=server.api_url, cookies=alice.cookies, timeout=5) as other:
                assert other.get("/chats").status_code == 200
                assert other.get("/health").status_code == 200
                assert other.get("/ready").status_code == 200
            assert sender.is_alive() and not answers
            with admin.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (EVENT_LOCK_KEY,))
            sender.join(30)
            assert [answer.status_code for answer in answers] == [201]
            history = alice.get(f"/chats/{chat_id}").json()["messages"]
            assert [message["content"] for message in history] == ["held up"]
        finally:
            admin.close()


def test_turns_pass_to_waiters_and_survive_a_cancelled_waiter():
    import asyncio

    from chat_server.storage.green import Turns

    async def scenario():
        turns = Turns(1)
        await turns.acquire()
        first = asyncio.ensure_future(turns.acquire())
        second = asyncio.ensure_future(turns.acquire())
        await asyncio.sleep(0)
        first.cancel()  # gives up while waiting: its place in the queue goes
        turns.release()  # the turn passes to the second waiter
        await asyncio.wait_for(second, 5)
        assert first.cancelled()
        turns.release()
        await asyncio.wait_for(turns.acquire(), 5)  # and back to a free turn once nobody waits

    asyncio.run(scenario())


@pytest.mark.postgres
def test_waiting_for_postgresql_works_on_descriptors_above_select_s_1023():
    """A worker holding ten thousand event streams opens its database connections on descriptors far above 1,023,
    which select() refuses (the 500s issue 25's benchmark found); the wait uses poll()."""
    import resource
    import socket

    from chat_server.storage import green

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the open-file limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    held = []
    try:
        while not held or held[-1].fileno() < 1050:
            held.append(socket.socket())
        green.install()
        connection = psycopg2.connect(fresh_postgres())
        try:
            assert connection.fileno() > 1023
            with connection.cursor() as cursor:
                cursor.execute("SELECT 42")
                assert cursor.fetchone() == (42,)
        finally:
            connection.close()
    finally:
        for each in held:
            each.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
