"""Threads: replies that hang off a message (the root) instead of the chat's history. The root carries a summary;
people follow a thread by posting in it, being mentioned in it, or asking to, and each has a read marker in it."""

import json

from peewee import SQL, PostgresqlDatabase, fn

from ..core.errors import Conflict, NotFound
from ..core.times import rfc3339
from ..models import THREAD_UPDATED, Event, Membership, Message, ThreadFollow, db
from ..storage.queries import UNREAD_CAP, message_columns, message_json, replied

PARTICIPANTS = 10  # ids a summary lists at most


def lock_root(chat_id: int, root_id: int) -> None:
    """Check that the root is a message of the chat's history, and on PostgreSQL lock its row, before the send's
    own locks (models.Message.send): a reaction or an edit of the root locks it first too, so neither waits for the
    other's event lock while holding what the other needs."""
    query = Message.select(Message.thread_root_id).where(Message.id == root_id, Message.chat == chat_id)
    if isinstance(db.obj, PostgresqlDatabase):
        query = query.for_update("FOR NO KEY UPDATE")
    row = query.tuples().first()
    if row is None:
        raise NotFound(f"message {root_id} does not exist in chat {chat_id}")
    if row[0] is not None:
        raise Conflict(f"message {root_id} is a reply in a thread; post in the thread of {row[0]} instead")


def summarize(chat_id: int, root_id: int) -> None:
    """Write the root's summary from its replies and tell the members (thread.updated); inside the transaction."""
    replies = Message.select(fn.COUNT(SQL("*")), fn.MAX(Message.time)).where(Message.thread_root_id == root_id)
    count, last = replies.tuples().first()
    recent = (
        Message.select(Message.sender_id, fn.MAX(Message.id).alias("newest"))
        .where(Message.thread_root_id == root_id)
        .group_by(Message.sender_id)
        .order_by(SQL("newest").desc())
        .limit(PARTICIPANTS)
    )
    summary = None
    if count:
        summary = {
            "reply_count": count,
            "last_reply_at": rfc3339(Message.time.python_value(last)),
            "participant_ids": [sender for sender, _ in recent.tuples()],
        }
    Message.update(thread=None if summary is None else json.dumps(summary)).where(Message.id == root_id).execute()
    Event.record(THREAD_UPDATED, chat_id, {"chat_id": chat_id, "message_id": root_id, "thread": summary})


def follow(chat_id: int, root_id: int, user_ids, read_to: int | None = None) -> None:
    """Make these users follow the thread (again), in one upsert; `read_to` moves their read marker there too (it
    never moves back)."""
    users = list(dict.fromkeys(user_ids))
    if not users:
        return
    rows = [{"root": root_id, "chat_id": chat_id, "user_id": user, "last_read_id": read_to} for user in users]
    ThreadFollow.insert_many(rows).on_conflict(
        conflict_target=[ThreadFollow.user_id, ThreadFollow.root], update={ThreadFollow.following: True}
    ).execute()
    if read_to is not None:
        behind = ThreadFollow.last_read_id.is_null() | (ThreadFollow.last_read_id < read_to)
        ThreadFollow.update(last_read_id=read_to).where(
            ThreadFollow.root == root_id, ThreadFollow.user_id.in_(users), behind
        ).execute()


def root_of(chat_id: int, root_id: int) -> None:
    """404 unless the message exists in the chat's history (a thread's root is never itself a reply)."""
    exists = Message.select(Message.id).where(
        Message.id == root_id, Message.chat == chat_id, Message.thread_root_id.is_null()
    )
    if isinstance(db.obj, PostgresqlDatabase) and db.in_transaction():  # a follow or marker waits for a delete
        exists = exists.for_update("FOR KEY SHARE")
    if exists.tuples().first() is None:
        raise NotFound(f"message {root_id} does not exist in chat {chat_id}")


def page(chat_id: int, root_id: int, reader_id: int, limit: int, before: int | None, after: int | None) -> dict:
    """The root and a page of its replies, oldest first, paged as Message.page pages a history."""
    root_of(chat_id, root_id)
    original = Message.alias("original")
    query = Message.select(*message_columns(Message=Message, original=original, stored_times=False))
    query = replied(query, Message=Message, original=original).where(Message.thread_root_id == root_id)
    if before is not None:
        query = query.where(Message.id < before)
    if after is not None:
        query = query.where(Message.id > after)
    oldest_first = after is not None and before is None
    rows = list(query.order_by(Message.id.asc() if oldest_first else Message.id.desc()).limit(limit).tuples())
    if not oldest_first:
        rows.reverse()
    mine = Message.reactions_of(reader_id, [row for row in rows if row[12]])
    root = Message.read([root_id], reader_id)[root_id]
    return {"root": root, "messages": [message_json(row, mine) for row in rows]}


def set_following(chat_id: int, root_id: int, user_id: int, following: bool) -> None:
    with db.atomic():
        root_of(chat_id, root_id)
        if following:
            follow(chat_id, root_id, [user_id])
        else:
            ThreadFollow.update(following=False).where(
                ThreadFollow.user_id == user_id, ThreadFollow.root == root_id
            ).execute()


def mark_read(chat_id: int, root_id: int, user_id: int, message_id: int) -> int:
    """Move the user's marker in the thread to one of its replies (never back), following it; the marker after."""
    with db.atomic():
        root_of(chat_id, root_id)
        reply = Message.select(Message.id).where(Message.id == message_id, Message.thread_root_id == root_id)
        if not reply.exists():
            raise NotFound(f"message {message_id} is not a reply in the thread of {root_id}")
        follow(chat_id, root_id, [user_id], read_to=message_id)
        return (
            ThreadFollow.select(ThreadFollow.last_read_id)
            .where(ThreadFollow.user_id == user_id, ThreadFollow.root == root_id)
            .scalar()
        )


def followed(user_id: int, limit: int) -> list[dict]:
    """The threads the user follows in chats they are in, newest reply first, with their unread counts (replies
    after the user's marker that others sent, counted up to UNREAD_CAP, as the chat list counts): one query, and one
    more for the roots."""
    newest = Message.select(fn.MAX(Message.id)).where(Message.thread_root_id == ThreadFollow.root)
    member = Membership.select(Membership.id).where(Membership.chat == ThreadFollow.chat_id, Membership.user == user_id)
    reply = Message.alias("reply")
    unread_rows = (
        reply.select(SQL("1"))
        .where(
            reply.thread_root_id == ThreadFollow.root,
            reply.id > fn.COALESCE(ThreadFollow.last_read_id, SQL("0")),
            reply.sender_id != user_id,
        )
        .limit(SQL(str(UNREAD_CAP)))
    )
    unread = Message.select(fn.COUNT(SQL("*"))).from_(unread_rows.alias("capped"))
    rows = list(
        ThreadFollow.select(
            ThreadFollow.chat_id, ThreadFollow.root, ThreadFollow.last_read_id, unread, newest.alias("newest")
        )
        .where(ThreadFollow.user_id == user_id, ThreadFollow.following, fn.EXISTS(member))
        .order_by(SQL("newest").desc(nulls="LAST"), ThreadFollow.root.desc())
        .limit(limit)
        .tuples()
    )
    roots = Message.read([row[1] for row in rows], user_id)
    return [
        {"chat_id": chat_id, "root": roots[root_id], "last_read_id": last_read, "unread_count": unread_count}
        for chat_id, root_id, last_read, unread_count, _newest in rows
        if root_id in roots
    ]
