"""Who may add a user to a chat at once, and who invites them instead: their `who_can_add_me`, or the server's
`--default-who-can-add-me` (CHAT_DEFAULT_WHO_CAN_ADD_ME) until they choose.

- `anyone`: every member of a chat may add them;
- `contacts` (the default): people who share a chat with them that they joined by themselves (Membership.is_contact);
- `nobody`: every add is an invitation.

An invitation is pending until the invitee accepts or declines it. Each inviter may send `--invite-rate` of them
(ratelimit.py); a declined one bars the same chat, and its sender, from inviting the user again for DECLINE_BARS.
"""

import datetime
import os

from peewee import IntegrityError, fn

from ..core.errors import Conflict
from ..core.settings import choice
from ..core.times import rfc3339, utcnow
from ..models import CHAT_INVITED, Chat, DeletedChat, Event, Invitation, Membership, User, db, lock_chats

CHOICES = ("anyone", "contacts", "nobody")
DEFAULT = "contacts"
DECLINE_BARS = datetime.timedelta(days=7)

default = DEFAULT


def default_who_can_add_me(env=os.environ) -> str:
    """The setting in the environment; ValueError for one that is not among CHOICES."""
    return choice(env, "CHAT_DEFAULT_WHO_CAN_ADD_ME", "--default-who-can-add-me", CHOICES, DEFAULT)


def configure(env=os.environ) -> None:
    global default
    default = default_who_can_add_me(env)


def who_can_add(user: User) -> str:
    """The user's own choice, else the server's default."""
    return user.who_can_add_me or default


def adds_at_once(adder_id: int, newcomer: User) -> bool:
    """Whether the adder may make the newcomer a member without asking."""
    setting = who_can_add(newcomer)
    if setting == "anyone":
        return True
    return setting == "contacts" and Membership.is_contact(newcomer.id, adder_id)


LISTED = 100  # pending invitations listed at most


def pending_for(user_id: int) -> list[dict]:
    """The user's newest LISTED pending invitations to chats that are not deleted, newest first."""
    deleted = DeletedChat.select(DeletedChat.chat).where(DeletedChat.chat == Invitation.chat)
    rows = (
        Invitation.select(
            Invitation.id, Invitation.chat, Chat.title, Invitation.inviter, User.name, Invitation.created_at
        )
        .join(Chat, on=(Chat.id == Invitation.chat))
        .join(User, on=(User.id == Invitation.inviter))
        .where(Invitation.user == user_id, Invitation.declined_at.is_null(), ~fn.EXISTS(deleted))
        .order_by(Invitation.id.desc())
        .limit(LISTED)
        .tuples()
    )
    return [_invitation_json(*row) for row in rows]


def blocking(chat_id: int, user_id: int, inviter_id: int, declined_since: datetime.datetime) -> str | None:
    """Why the user cannot be invited to the chat now, or None: already invited, or declined one lately."""
    rows = Invitation.select(Invitation.chat, Invitation.declined_at).where(
        Invitation.user == user_id,
        (Invitation.chat == chat_id)
        | ((Invitation.inviter == inviter_id) & (Invitation.declined_at >= declined_since)),
    )
    for chat, declined_at in rows.tuples():
        if declined_at is None and chat == chat_id:
            return "already invited to this chat"
        if declined_at is not None and declined_at >= declined_since:
            return "declined an invitation to this chat or from you lately"
    return None


def invite(chat_id: int, user_id: int, inviter_id: int) -> dict | None:
    """Invite the user while the inviter is a member and the chat is not being deleted, telling only the
    invitee (chat.invited); the invitation, or None when the inviter or the chat went meanwhile. An old
    declined invitation to the same chat is replaced; another invitation made meanwhile is a Conflict."""
    try:
        return _invite(chat_id, user_id, inviter_id)
    except IntegrityError:
        raise Conflict("they were invited to this chat meanwhile") from None


def _invite(chat_id: int, user_id: int, inviter_id: int) -> dict | None:
    with db.atomic():
        lock_chats(Chat.id == chat_id, "FOR SHARE")
        inviter = Membership.select(Membership.id).where(Membership.chat == chat_id, Membership.user == inviter_id)
        deleted = DeletedChat.select(DeletedChat.chat).where(DeletedChat.chat == chat_id)
        row = (
            Chat.select(Chat.title, User.name)
            .join(User, on=(User.id == inviter_id))
            .where(Chat.id == chat_id, fn.EXISTS(inviter), ~fn.EXISTS(deleted))
            .tuples()
            .first()
        )
        if row is None:
            return None
        now = utcnow()
        Invitation.delete().where(
            Invitation.chat == chat_id, Invitation.user == user_id, Invitation.declined_at.is_null(False)
        ).execute()
        invitation_id = Invitation.insert(chat=chat_id, user=user_id, inviter=inviter_id, created_at=now).execute()
        invitation = _invitation_json(invitation_id, chat_id, row[0], inviter_id, row[1], now)
        Event.record(CHAT_INVITED, None, {"invitation": invitation}, user_id)
    return invitation


def accept(invitation_id: int, user_id: int, name: str) -> int | None:
    """Join the chat the user's pending invitation is for, by themselves, and let the invitation go; the chat's
    id, or None when there is no such pending invitation or its chat is being deleted."""
    with db.atomic():
        invitation = Invitation.get_or_none(
            Invitation.id == invitation_id, Invitation.user == user_id, Invitation.declined_at.is_null()
        )
        if invitation is None:
            return None
        lock_chats(Chat.id == invitation.chat_id, "FOR SHARE")
        already = Membership.select(Membership.id).where(
            Membership.chat == invitation.chat_id, Membership.user == user_id
        )
        joined = Membership.join(invitation.chat_id, user_id, name, True, ~fn.EXISTS(already))
        if not joined and not already.exists():
            return None
        invitation.delete_instance()
    return invitation.chat_id


def decline(invitation_id: int, user_id: int) -> bool:
    """Mark the user's pending invitation declined; whether there was one."""
    with db.atomic():
        query = Invitation.update(declined_at=utcnow()).where(
            Invitation.id == invitation_id, Invitation.user == user_id, Invitation.declined_at.is_null()
        )
        return query.execute() > 0


def _invitation_json(invitation_id, chat_id, title, inviter_id, inviter_name, created_at) -> dict:
    return {
        "id": invitation_id,
        "chat_id": chat_id,
        "title": title,
        "inviter": {"id": inviter_id, "name": inviter_name},
        "created_at": rfc3339(created_at),
    }
