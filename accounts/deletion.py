"""Deleting an account: its sessions, its memberships and the chats it was the last member of, a batch per
transaction, then the user."""

from peewee import PostgresqlDatabase, fn

from ..models import BATCH_ROWS, SESSION_ENDED, Chat, Event, Membership, Session, User, db, in_batches


def delete_account(user: User) -> None:
    """Drop the user, their sessions and memberships, and every chat they were the last member of.

    A batch per transaction, however many chats: the sessions first (the user is logged out), then the
    memberships (the chats left empty are gone at once, their messages purged after), then the user.
    Every state in between is one the user could have reached by leaving chats one by one, and deleting
    the account again finishes the job.
    """
    sessions = Session.select(Session.id).where(Session.user == user.id).limit(BATCH_ROWS)

    def end_sessions() -> bool:
        ended = Session.delete().where(Session.id.in_(sessions)).execute()
        Event.record(SESSION_ENDED, None, {}, user_id=user.id)  # every stream of the user's ends
        return ended == BATCH_ROWS

    in_batches(end_sessions)
    while True:
        in_batches(lambda: Membership.leave_some(user.id) == BATCH_ROWS)
        Chat.purge_deleted()
        with db.atomic():
            # Someone may have added the user to a chat meanwhile; then go round again. On PostgreSQL the lock
            # waits for a chat being created or joined right now (the new membership's foreign key holds the
            # user row), so the check sees its membership; a later one fails its foreign key instead.
            if isinstance(db.obj, PostgresqlDatabase):
                User.select(User.id).where(User.id == user.id).for_update().execute()
            mine = Membership.select(Membership.id).where(Membership.user == user.id)
            if User.delete().where(User.id == user.id, ~fn.EXISTS(mine)).execute():
                return
