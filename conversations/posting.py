"""Sending and deleting a message with what it carries beside text and files: the message it answers, the thread it
is posted in, and its mentions. A plain message takes the send's one round trip (models.Message.send); the rest run
in one transaction around it."""

from collections.abc import Callable

from peewee import PostgresqlDatabase

from ..core.errors import NotFound
from ..models import MESSAGE_DELETED, Chat, Event, Message, ThreadFollow, db, lock_chats
from ..storage.queries import PLAIN, SNIPPET_LENGTH, Post
from . import mentions, threads


def prepare(chat_id: int, content: str, reply_to: int | None, thread_root_id: int | None) -> Post:
    """What the message carries: the quote of the message it answers (404 unless that is in the chat) and whom its
    @names reach. The thread's root is checked inside the send (threads.lock_root)."""
    reply = {}
    if reply_to is not None:
        row = (
            Message.select(Message.sender_id, Message.content)
            .where(Message.id == reply_to, Message.chat == chat_id)
            .tuples()
            .first()
        )
        if row is None:
            raise NotFound(f"message {reply_to} does not exist in chat {chat_id}")
        reply = {"reply_to_id": reply_to, "reply_to_sender_id": row[0], "snippet": row[1][:SNIPPET_LENGTH]}
    named, everyone = mentions.resolve(chat_id, content)
    if not reply and thread_root_id is None and not named and not everyone:
        return PLAIN
    return Post(**reply, thread_root_id=thread_root_id, mentions=named, mentions_all=everyone)


def send(chat_id: int, sender_id: int, post: Post, store: Callable[[], int | None]) -> int | None:
    """Send with `store` (models.Message.send, or files.uploads.send for a message with files), then do what the
    post asks for in the same transaction: the thread's summary and followers, the mentions' rows and events."""
    if post is PLAIN:
        return store()
    with db.atomic():
        root = post.thread_root_id
        if root is not None:
            if isinstance(db.obj, PostgresqlDatabase):  # the send's first lock, taken before the root's
                lock_chats(Chat.id == chat_id)
            threads.lock_root(chat_id, root)
        message_id = store()
        if message_id is None:
            return None
        if root is not None:
            threads.summarize(chat_id, root)
            root_sender = Message.select(Message.sender_id).where(Message.id == root).scalar()
            reached = mentions.reached(chat_id, post.mentions, post.mentions_all)
            threads.follow(chat_id, root, [sender_id], read_to=message_id)
            threads.follow(chat_id, root, [root_sender, *reached])
        mentions.record(chat_id, message_id, sender_id, post.mentions, post.mentions_all, root is not None)
    return message_id


def remention(chat_id: int, content: str) -> Callable[[int], dict]:
    """For an edit (models.Message.edit): whom the new text mentions, indexed again, without new alerts."""

    def columns(message_id: int) -> dict:
        named, everyone = mentions.resolve(chat_id, content)
        root, sender = (
            Message.select(Message.thread_root_id, Message.sender_id).where(Message.id == message_id).tuples().first()
        )
        mentions.index(chat_id, message_id, sender, named, everyone, root is not None)
        return mentions.columns(named, everyone)

    return columns


def remove(message: Message) -> None:
    """Delete a message. A thread's root takes its replies with it, as Mattermost deletes them; a reply leaves its
    root's summary one shorter."""
    with db.atomic():
        if message.thread_root_id is not None and isinstance(db.obj, PostgresqlDatabase):
            lock_chats(Chat.id == message.chat_id)
            threads.lock_root(message.chat_id, message.thread_root_id)
        message.delete_instance()
        if message.thread_root_id is None:
            Message.delete().where(Message.thread_root_id == message.id).execute()
            ThreadFollow.delete().where(ThreadFollow.root == message.id).execute()
        elif Message.select().where(Message.id == message.thread_root_id).exists():
            threads.summarize(message.chat_id, message.thread_root_id)
        Event.record(MESSAGE_DELETED, message.chat_id, {"chat_id": message.chat_id, "message_id": message.id})
