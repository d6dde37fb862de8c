"""Direct chats: the one chat of two people (or of one person with themselves), created on first use."""

from peewee import fn

from ..core.errors import Conflict
from ..models import MEMBER_ADDED, Chat, DirectChat, Event, Membership, Message, User, db

TITLE = "Direct message"  # the stored title, shown once the other person's account is gone


def is_direct(chat_id: int) -> bool:
    return Chat.select().where(Chat.id == chat_id, Chat.kind == "direct").exists()


def refuse_if_direct(chat_id: int, what: str) -> None:
    """409 for a change a direct chat cannot take (new members, a title)."""
    if is_direct(chat_id):
        raise Conflict(f"a direct chat {what}")


def _existing(low: int, high: int) -> int | None:
    return DirectChat.select(DirectChat.chat).where(DirectChat.low == low, DirectChat.high == high).scalar()


def open_with(user_id: int, other: User) -> tuple[int, bool]:
    """The direct chat of the two, and whether this call created it. The unique (low, high) pair decides a race:
    the loser's transaction is rolled back and it finds the winner's chat."""
    low, high = sorted((user_id, other.id))
    found = _existing(low, high)
    if found is not None:
        _unhide(found, user_id)
        return found, False
    with db.atomic() as transaction:
        chat = Chat.create(title=TITLE, kind="direct")
        created = DirectChat.insert(chat=chat.id, low=low, high=high).on_conflict_ignore().as_rowcount().execute()
        if not created:
            transaction.rollback()
        else:
            members = {user_id: User.get_by_id(user_id).name, other.id: other.name}
            rows = [{"chat": chat.id, "user": uid, "joined_by_self": uid == user_id} for uid in members]
            Membership.insert_many(rows).execute()
            Event.record_many(
                [
                    {
                        "kind": MEMBER_ADDED,
                        "chat_id": chat.id,
                        "user_id": uid,
                        "data": {"chat_id": chat.id, "user": {"id": uid, "name": name}},
                    }
                    for uid, name in members.items()
                ]
            )
    if created:
        return chat.id, True
    found = _existing(low, high)
    _unhide(found, user_id)
    return found, False


def _unhide(chat_id: int, user_id: int) -> None:
    """Opening a direct chat you left shows it again."""
    Membership.update(hidden_after=None).where(
        Membership.chat == chat_id, Membership.user == user_id, Membership.hidden_after.is_null(False)
    ).execute()


def hide(chat_id: int, user_id: int) -> None:
    """Leave a direct chat: it drops out of the member's list until a newer message arrives; they stay a member
    and its history stays."""
    newest = Message.select(fn.COALESCE(fn.MAX(Message.id), 0)).where(Message.chat == chat_id).scalar()
    with db.atomic():
        Membership.update(hidden_after=newest).where(Membership.chat == chat_id, Membership.user == user_id).execute()
