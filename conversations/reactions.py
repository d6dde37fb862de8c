"""Reactions: one per person and emoji on a message (Matrix's annotation rule), counted on the message's row in
order of first use (models.Message.reactions), and pushed as reaction.added and reaction.removed."""

import json

import emoji
from peewee import SQL, PostgresqlDatabase, fn

from ..core.errors import BadRequest, Conflict, NotFound
from ..models import REACTION_ADDED, REACTION_REMOVED, Event, Message, Reaction, User, avatar_url, db
from . import rules

MAX_EMOJI = 20  # distinct emoji on one message


def check_emoji(text: str) -> str:
    """The emoji, if it is one fully-qualified Unicode emoji (a ZWJ sequence or a skin tone counts as one); else 400."""
    data = emoji.EMOJI_DATA.get(text)
    if data is None or data["status"] != emoji.STATUS["fully_qualified"]:
        raise BadRequest(f"{text!r} is not one fully-qualified emoji")
    return text


def _locked_message(chat_id: int, message_id: int) -> None:
    """404 unless the message is in the chat; on PostgreSQL its row is locked, so its reactions change in turns and a
    delete waits (or finds it gone): a reaction never outlives its message."""
    query = Message.select(Message.id).where(Message.id == message_id, Message.chat == chat_id)
    if isinstance(db.obj, PostgresqlDatabase):
        query = query.for_update("FOR NO KEY UPDATE")
    if query.tuples().first() is None:
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")


def _counts(message_id: int) -> list[list]:
    """The message's reactions as its row keeps them: [emoji, count] in order of first use."""
    rows = (
        Reaction.select(Reaction.emoji, fn.COUNT(SQL("*")), fn.MIN(Reaction.id).alias("first"))
        .where(Reaction.message == message_id)
        .group_by(Reaction.emoji)
        .order_by(SQL("first"))
        .tuples()
    )
    return [[emoji_, count] for emoji_, count, _ in rows]


def _answer(message_id: int, counts: list[list], mine: set[str]) -> dict:
    return {
        "message_id": message_id,
        "reactions": [{"emoji": e, "count": c, "me": e in mine} for e, c in counts],
    }


def _mine(message_id: int, user_id: int) -> set[str]:
    rows = Reaction.select(Reaction.emoji).where(Reaction.message == message_id, Reaction.user_id == user_id)
    return {emoji_ for (emoji_,) in rows.tuples()}


def change(chat_id: int, message_id: int, user_id: int, emoji_: str, add: bool) -> dict:
    """Add or take back the user's reaction; the message's reactions after. A repeat changes nothing."""
    check_emoji(emoji_)
    with db.atomic():
        rules.require_member(chat_id, user_id)
        _locked_message(chat_id, message_id)
        if add:
            changed = (
                Reaction.insert(message=message_id, user_id=user_id, emoji=emoji_)
                .on_conflict_ignore()
                .as_rowcount()
                .execute()
            )
        else:
            changed = (
                Reaction.delete()
                .where(Reaction.message == message_id, Reaction.user_id == user_id, Reaction.emoji == emoji_)
                .execute()
            )
        counts = _counts(message_id)
        if changed:
            if len(counts) > MAX_EMOJI:
                raise Conflict(f"a message holds at most {MAX_EMOJI} different emoji")
            Message.update(reactions=json.dumps(counts, ensure_ascii=False) if counts else None).where(
                Message.id == message_id
            ).execute()
            data = {"chat_id": chat_id, "message_id": message_id, "emoji": emoji_, "user_id": user_id}
            Event.record(REACTION_ADDED if add else REACTION_REMOVED, chat_id, data)
        return _answer(message_id, counts, _mine(message_id, user_id))


def reactors(chat_id: int, message_id: int, user_id: int, emoji_: str, limit: int, after: int | None) -> dict:
    """Who reacted with the emoji, in the order they did, a page at a time (the cursor is the last reaction's id)."""
    check_emoji(emoji_)
    rules.require_member(chat_id, user_id)
    if not Message.select().where(Message.id == message_id, Message.chat == chat_id).exists():
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")
    query = (
        Reaction.select(Reaction.id, Reaction.user_id, User.name, User.avatar_upload_id)
        .join(User, on=(User.id == Reaction.user_id))
        .where(Reaction.message == message_id, Reaction.emoji == emoji_, Reaction.id > (after or 0))
        .order_by(Reaction.id)
        .limit(limit + 1)
    )
    rows = list(query.tuples())
    more = len(rows) > limit
    rows = rows[:limit]
    users = [{"id": uid, "name": name, "avatar_url": avatar_url(avatar)} for _, uid, name, avatar in rows]
    return {"users": users, "next_cursor": rows[-1][0] if more else None}
