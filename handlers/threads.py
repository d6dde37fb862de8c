"""Threads: read one, follow it or stop, mark it read, and list the ones you follow."""

from ..conversations import rules, threads
from ..edge.offload import writes


def list_thread(
    user: int, chat_id: int, message_id: int, limit: int = 100, before: int | None = None, after: int | None = None
) -> dict:
    rules.require_member(chat_id, user)
    return threads.page(chat_id, message_id, user, limit, before, after)


@writes
def follow_thread(user: int, chat_id: int, message_id: int) -> dict:
    rules.require_member(chat_id, user)
    threads.set_following(chat_id, message_id, user, True)
    return {"status": "ok"}


@writes
def unfollow_thread(user: int, chat_id: int, message_id: int) -> dict:
    rules.require_member(chat_id, user)
    threads.set_following(chat_id, message_id, user, False)
    return {"status": "ok"}


@writes
def mark_thread_read(user: int, chat_id: int, message_id: int, body: dict) -> dict:
    rules.require_member(chat_id, user)
    return {"status": "ok", "last_read_id": threads.mark_read(chat_id, message_id, user, body["message_id"])}


def list_threads(user: int, limit: int = 50) -> dict:
    return {"threads": threads.followed(user, limit)}
