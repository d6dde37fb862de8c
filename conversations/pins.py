"""Pins: a chat's pinned messages, at most MAX_PINS, pushed as message.pinned and message.unpinned."""

from peewee import PostgresqlDatabase

from ..core.errors import Conflict, Forbidden, NotFound
from ..core.times import rfc3339
from ..models import MESSAGE_PINNED, MESSAGE_UNPINNED, Chat, Event, Message, Pin, db, lock_chats
from . import rules

MAX_PINS = 50


def _allowed(chat_id: int, user_id: int) -> None:
    rules.require_member(chat_id, user_id)
    if not rules.may_pin(chat_id, user_id):
        raise Forbidden(f"you may not pin messages in chat {chat_id}")


def change(chat_id: int, message_id: int, user_id: int, pin: bool) -> None:
    """Pin or unpin a message of the chat; a repeat changes nothing. Pins of one chat take turns (the chat's row is
    locked on PostgreSQL), so the cap holds under concurrent pins."""
    _allowed(chat_id, user_id)
    with db.atomic():
        if isinstance(db.obj, PostgresqlDatabase):
            lock_chats(Chat.id == chat_id)
        message = Message.select(Message.id).where(Message.id == message_id, Message.chat == chat_id)
        if isinstance(db.obj, PostgresqlDatabase):  # a delete in progress finishes first, or waits for the pin
            message = message.for_update("FOR KEY SHARE")
        if message.tuples().first() is None:
            raise NotFound(f"message {message_id} does not exist in chat {chat_id}")
        if pin:
            if Pin.select().where(Pin.message == message_id).exists():
                return
            if Pin.select().where(Pin.chat == chat_id).count() >= MAX_PINS:
                raise Conflict(f"a chat holds at most {MAX_PINS} pins")
            Pin.insert(chat=chat_id, message=message_id, pinned_by=user_id).execute()
        elif not Pin.delete().where(Pin.message == message_id).execute():
            return
        data = {"chat_id": chat_id, "message_id": message_id, "user_id": user_id}
        Event.record(MESSAGE_PINNED if pin else MESSAGE_UNPINNED, chat_id, data)


def listed(chat_id: int, user_id: int) -> dict:
    rules.require_member(chat_id, user_id)
    rows = list(
        Pin.select(Pin.message, Pin.pinned_by, Pin.pinned_at)
        .where(Pin.chat == chat_id)
        .order_by(Pin.id.desc())
        .tuples()
    )
    messages = Message.read([message for message, _, _ in rows], user_id)
    return {
        "pins": [
            {"message": messages[message], "pinned_by": by, "pinned_at": rfc3339(at)}
            for message, by, at in rows
            if message in messages
        ]
    }
