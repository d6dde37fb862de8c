"""Chats: list yours, create, rename, leave, and mark read."""

from ..core.errors import NotFound
from ..edge.cookies import session_id
from ..edge.idempotency import idempotent
from ..edge.offload import threaded, writes
from ..edge.session_check import SessionClaim, checks_session
from ..models import Chat, Membership, Message
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
    Chat.rename(chat_id, body["title"])
    return {"status": "ok"}


@threaded
@writes
def leave_chat(user: int, chat_id: int) -> dict:
    require_member(chat_id, user)
    Membership.leave(chat_id, user)
    return {"status": "ok"}


@writes
def mark_read(user: int, chat_id: int, body: dict, token_info: dict) -> dict:
    require_member(chat_id, user)
    message_id = body["message_id"]
    if not Message.select().where(Message.id == message_id, Message.chat == chat_id).exists():
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")
    return {"status": "ok", "last_read_id": Membership.mark_read(chat_id, user, message_id, session_id(token_info))}
