"""Bulk deletes a batch per transaction (storage/batches.py runs them): the event log's old rows, and the chats
whose last member left, with their messages. Built over the tables models.py passes in, as storage/queries.py is."""

import datetime

from peewee import fn

from .batches import BATCH_ROWS, advisory_lock

PRUNE_LOCK_KEY = 0x63686176  # PostgreSQL's advisory lock for pruning the event log
# Deleted chats purged together: their messages BATCH_ROWS at a time, then their rows (about 5 µs each on SQLite).
CHATS_PER_PURGE = 1_000
PURGE_LOCK_KEY = 0x63686174  # "chat": PostgreSQL's advisory lock for purges


def prune_step(older_than: datetime.datetime, *, Event, PrunedEvents) -> bool:
    """Delete a batch of the events recorded before `older_than`, oldest first; whether any went."""
    advisory_lock(PRUNE_LOCK_KEY)
    through = None
    for event_id, time in Event.select(Event.id, Event.time).order_by(Event.id).limit(BATCH_ROWS).tuples():
        if time >= older_than:
            break
        through = event_id
    if through is None:
        return False
    Event.delete().where(Event.id <= through).execute()
    PrunedEvents.insert(id=1, through=through).on_conflict(
        conflict_target=[PrunedEvents.id], update={PrunedEvents.through: through}
    ).execute()
    return True


# Deleted chats purged together: their messages BATCH_ROWS at a time, then their rows (about 5 µs each on SQLite).
CHATS_PER_PURGE = 1_000
PURGE_LOCK_KEY = 0x63686174  # "chat": PostgreSQL's advisory lock for purges


def _members_of(chat, Membership):
    return Membership.select(Membership.id).where(Membership.chat == chat)


def _deleted_chats(DeletedChat, Membership, only_memberless: bool = True):
    """The first deleted chats still to purge, as a subquery; one revived by a member added meanwhile is kept."""
    chats = DeletedChat.select(DeletedChat.chat).order_by(DeletedChat.chat).limit(CHATS_PER_PURGE)
    return chats.where(~fn.EXISTS(_members_of(DeletedChat.chat, Membership))) if only_memberless else chats


def purge_step(*, Chat, DeletedChat, Membership, Message) -> bool:
    """Delete a batch of the deleted chats' messages or, once they have none, the chats; whether anything went."""
    advisory_lock(PURGE_LOCK_KEY)  # purges take turns: they may delete the same rows in a different order
    messages = (
        Message.select(Message.id).where(Message.chat.in_(_deleted_chats(DeletedChat, Membership))).limit(BATCH_ROWS)
    )
    if Message.delete().where(Message.id.in_(messages)).execute():
        return True
    left = Message.select(Message.id).where(Message.chat == Chat.id)
    purged = Chat.delete().where(Chat.id.in_(_deleted_chats(DeletedChat, Membership)), ~fn.EXISTS(left)).execute()
    revived = DeletedChat.delete().where(
        DeletedChat.chat.in_(_deleted_chats(DeletedChat, Membership, only_memberless=False)),
        fn.EXISTS(_members_of(DeletedChat.chat, Membership)),
    )
    return purged + revived.execute() > 0
