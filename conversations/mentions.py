"""Mentions: `@name` for a member of the chat and `@all` for everyone, resolved on the server when a message is sent
or edited; the rows the chat list counts (Mention), and the `mention` events for those who want alerts."""

import itertools
import json
import re

from ..core import names
from ..core.times import utcnow
from ..models import MENTION, Event, Membership, Mention, Message, User

MAX_MARKS = 50  # the first @s of a message that are looked at
EVERYONE = 0  # Mention.user_id of an `@all`


def _ends_word(text: str, end: int) -> bool:
    return end >= len(text) or not (text[end].isalnum() or text[end] == "_")


def resolve(chat_id: int, content: str) -> tuple[list[int], bool]:
    """Whom the text's @names reach among the chat's members, in order of first mention, and whether it says @all.

    A name matches as its look-alikes do at login (core/names.py): `@Alice` and `@alice` are one person. Names may
    hold spaces, so at each @ every member name's length is tried, longest first."""
    marks = [found.start() for found in itertools.islice(re.finditer("@", content), MAX_MARKS)]
    if not marks:
        return [], False
    everyone = any(content.startswith("all", at + 1) and _ends_word(content, at + 4) for at in marks)
    by_length: dict[int, dict[str, int]] = {}
    members = User.select(User.id, User.name, User.name_key).join(Membership, on=(Membership.user == User.id))
    for user_id, name, key in members.where(Membership.chat == chat_id).tuples():
        by_length.setdefault(len(name), {})[key or names.name_key(name)] = user_id
    found: list[int] = []
    for at in marks:
        for length in sorted(by_length, reverse=True):
            end = at + 1 + length
            if end > len(content) or not _ends_word(content, end):
                continue
            try:
                key = names.name_key(content[at + 1 : end])
            except Exception:
                continue
            user_id = by_length[length].get(key)
            if user_id is not None:
                if user_id not in found:
                    found.append(user_id)
                break
    return found, everyone


def columns(mentions: list[int], everyone: bool) -> dict:
    """The message columns that say whom it mentions."""
    return {Message.mentions: json.dumps(mentions) if mentions else None, Message.mentions_all: everyone}


def index(
    chat_id: int, message_id: int, sender_id: int, mentions: list[int], everyone: bool, in_thread: bool, new=False
) -> None:
    """Index a history message's mentions for the chat list's mention_count (a thread reply counts in its thread's
    unread count instead), in place of those it had unless it is `new`."""
    if not new:
        Mention.delete().where(Mention.message == message_id).execute()
    targets = [EVERYONE] if everyone else mentions
    if not in_thread and targets:
        rows = [{"message": message_id, "chat_id": chat_id, "user_id": u, "sender_id": sender_id} for u in targets]
        Mention.insert_many(rows).execute()


def record(chat_id: int, message_id: int, sender_id: int, mentions: list[int], everyone: bool, in_thread: bool):
    """Index a new message's mentions, and tell each member reached who wants alerts (a `mention` event, for them
    alone); call it inside the send's transaction."""
    index(chat_id, message_id, sender_id, mentions, everyone, in_thread, new=True)
    alerted = Membership.select(Membership.user).where(
        Membership.chat == chat_id,
        Membership.user != sender_id,
        Membership.notify != "none",
        Membership.muted_until.is_null() | (Membership.muted_until <= utcnow()),
    )
    if not everyone:
        if not mentions:
            return
        alerted = alerted.where(Membership.user.in_(mentions))
    data = {"chat_id": chat_id, "message_id": message_id}
    Event.record_many(
        [
            {"kind": MENTION, "chat_id": None, "user_id": user, "data": data}
            for (user,) in alerted.order_by(Membership.user).tuples()
        ]
    )


def reached(chat_id: int, mentions: list[int], everyone: bool) -> list[int]:
    """The members a mention reaches: the named ones, or every member for @all."""
    if not everyone:
        return mentions
    return [user for (user,) in Membership.select(Membership.user).where(Membership.chat == chat_id).tuples()]
