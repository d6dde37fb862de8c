"""Which requests leave the event loop: what a handler does decides, and writes never wait on the loop."""

import asyncio
import contextlib
import sqlite3
import threading

import pytest
import yaml

from chat_server import models
from chat_server.app import SPEC
from chat_server.edge.offload import is_threaded, is_writer
from chat_server.edge.routes import VERBS, resolve
from tests.conftest import write_lock_held_by_another_thread

WRITERS = {
    "login",
    "logout",
    "end_session",
    "change_password",
    "register_user",
    "update_user",
    "delete_user",
    "create_chat",
    "rename_chat",
    "leave_chat",
    "send_message",
    "edit_message",
    "delete_message",
    "add_member",
    "mark_read",
    "accept_invitation",
    "decline_invitation",
    "set_avatar",
    "remove_avatar",
    "add_reaction",
    "remove_reaction",
    "follow_thread",
    "unfollow_thread",
    "mark_thread_read",
    "update_chat_settings",
    "open_direct_chat",
    "pin_message",
    "unpin_message",
    "set_presence",
}
# Async: it reads its body as it arrives, on the event loop, then stores the file in the threadpool (in_thread).
ASYNC_WRITERS = {"upload_file"}
READERS = {
    "get_session",
    "get_user",
    "list_chats",
    "list_messages",
    "get_message",
    "search_messages",
    "list_members",
    "list_invitations",
    "get_events",
    "get_health",
    "get_ready",
    "download_upload",
    "download_named_upload",
    "download_thumbnail",
    "list_reactors",
    "list_thread",
    "list_threads",
    "get_chat_settings",
    "list_pins",
    # Typing writes nothing: it publishes on the ephemeral channel (streams/pubsub.py).
    "set_typing",
    "list_typing",
    "get_presence",
}
# They hash a password, delete an unbounded number of rows, or (search) read one.
# search_messages is async, and runs in a lane of its own (edge/search_lane.py), never the threadpool.
THREADED = {"login", "register_user", "change_password", "end_session", "leave_chat", "delete_user", "delete_message"}


@pytest.fixture
def database_path(tmp_path):
    return tmp_path / "offload.db"


@pytest.fixture
def database_url(database_path):
    return f"sqlite:///{database_path}"


def _handlers() -> dict:
    spec = yaml.safe_load(SPEC.read_text())
    handlers = {}
    for item in spec["paths"].values():
        for verb in VERBS:
            if verb in item:
                operation = item[verb]
                controller = operation.get("x-openapi-router-controller", item.get("x-openapi-router-controller"))
                handlers[operation["operationId"]] = resolve(f"{controller}.{operation['operationId']}")
    return handlers


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def write_lock_held_by_another_process(database_path):
    """SQLite's own write lock taken by another connection, as another worker's would be, until the event is set."""
    release = threading.Event()
    other = sqlite3.connect(database_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def hold():
        release.wait(10)
        other.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        yield release
    finally:
        release.set()
        holder.join()
        other.close()


def spy_on(monkeypatch, model, name, release: threading.Event | None = None) -> list[bool]:
    """Record, for each call of a model's class method, whether it ran on the event loop.

    A call made off the event loop then sets `release`, so the writer it waits for can finish.
    """
    calls, original = [], getattr(model, name)

    def spy(*args, **kwargs):
        calls.append(_on_event_loop())
        if release is not None and not calls[-1]:
            release.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(model, name, spy)
    return calls


def test_every_operation_is_known_as_a_reader_or_a_writer():
    assert set(_handlers()) == WRITERS | ASYNC_WRITERS | READERS


def test_every_handler_that_writes_is_marked():
    assert {name for name, handler in _handlers().items() if is_writer(handler)} == WRITERS


def test_only_hashing_and_unbounded_handlers_are_threaded():
    assert {name for name, handler in _handlers().items() if is_threaded(handler)} == THREADED


def test_logout_runs_in_the_threadpool_while_another_thread_writes(alice, monkeypatch):
    with write_lock_held_by_another_thread() as release:
        calls = spy_on(monkeypatch, models.Session, "revoke", release)
        response = alice.client.get("/api/logout")
    assert response.status_code == 200
    assert calls == [False]
    assert alice.client.get("/api/chats").status_code == 401


def test_send_message_runs_in_the_threadpool_while_another_thread_writes(alice, make_chat, monkeypatch):
    chat_id = make_chat(alice)
    with write_lock_held_by_another_thread() as release:
        calls = spy_on(monkeypatch, models.Message, "send", release)
        response = alice.client.post(f"/api/chats/{chat_id}", data={"content": "queued behind the writer"})
    assert response.status_code == 201
    assert calls == [False]


def test_reads_stay_on_the_event_loop_while_another_thread_writes(alice, make_chat, send, monkeypatch):
    chat_id = make_chat(alice)
    send(alice, chat_id, "readable")
    calls = spy_on(monkeypatch, models.Message, "page")
    with write_lock_held_by_another_thread():
        response = alice.client.get(f"/api/chats/{chat_id}")
        assert models.db.obj.writing_elsewhere()
    assert [m["content"] for m in response.json()["messages"]] == ["readable"]
    assert calls == [True]


def test_write_moves_to_the_threadpool_when_another_process_holds_the_lock(alice, database_path, monkeypatch):
    with write_lock_held_by_another_process(database_path) as release:
        calls = spy_on(monkeypatch, models.Session, "revoke", release)
        response = alice.client.get("/api/logout")
    assert response.status_code == 200
    # Tried on the event loop, gave up before writing anything, and waited for the lock in the threadpool.
    assert calls == [True, False]
    assert alice.client.get("/api/chats").status_code == 401


def test_writes_run_on_the_event_loop_when_no_one_else_writes(alice, make_chat, monkeypatch):
    calls = spy_on(monkeypatch, models.Chat, "rename")
    chat_id = make_chat(alice)
    assert alice.client.put(f"/api/chats/{chat_id}", data={"title": "renamed"}).status_code == 200
    assert calls == [True]
