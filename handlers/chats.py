"""Chats: list yours, create, rename, leave, and mark read."""

from ..accounts import consent
from ..conversations import direct, settings
from ..core.errors import Forbidden, NotFound
from ..edge.cookies import session_id
from ..edge.idempotency import idempotent
from ..edge.offload import threaded, writes
from ..edge.session_check import SessionClaim, checks_session
from ..models import Chat, Membership, Message, User
from . import require_member


@checks_session
def list_chats(claim: SessionClaim, limit: int = 100, before: str | None = None) -> dict:
    chats, next_cursor, found = Chat.listing_for(claim.user_id, claim.lookup(), limit, before)
    claim.settle(found)
    return {"chats": chats, "next_cursor": next_cursor}


@writes
@idempotent
def create_chat(user: int, body: dict):
    chat = Chat.create_with_member(body["title"], user)
    return {"status": "ok", "id": chat.id}, 201, {"Location": f"/api/chats/{chat.id}"}


@writes
def rename_chat(user: int, chat_id: int, body: dict) -> dict:
    require_member(chat_id, user)
    direct.refuse_if_direct(chat_id, "is titled with the other person's name and cannot be renamed")
    Chat.rename(chat_id, body["title"])
    return {"status": "ok"}


@threaded
@writes
def leave_chat(user: int, chat_id: int) -> dict:
    require_member(chat_id, user)
    if direct.is_direct(chat_id):  # hidden until a new message arrives; the history stays
        direct.hide(chat_id, user)
    else:
        Membership.leave(chat_id, user)
    return {"status": "ok"}


@writes
def mark_read(user: int, chat_id: int, body: dict, token_info: dict) -> dict:
    require_member(chat_id, user)
    message_id = body["message_id"]
    if not Message.select().where(Message.id == message_id, Message.chat == chat_id).exists():
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")
    return {"status": "ok", "last_read_id": Membership.mark_read(chat_id, user, message_id, session_id(token_info))}


def get_chat_settings(user: int, chat_id: int) -> dict:
    return settings.of(chat_id, user)


@writes
def update_chat_settings(user: int, chat_id: int, body: dict) -> dict:
    return settings.change(chat_id, user, body)


@writes
def open_direct_chat(user: int, user_id: int):
    other = User.get_or_none(User.id == user_id)
    if other is None:
        raise NotFound(f"user {user_id} does not exist")
    if other.id != user and not consent.adds_at_once(user, other):
        raise Forbidden(f"{other.name} takes direct messages only from the people their who_can_add_me allows")
    chat_id, created = direct.open_with(user, other)
    return {"status": "ok", "id": chat_id}, 201 if created else 200, {"Location": f"/api/chats/{chat_id}"}
