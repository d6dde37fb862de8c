"""Chats: list yours, create, rename and leave."""

from ..models import Chat, Membership
from . import require_member, threaded, writes


def list_chats(user: int, limit: int = 100, before: str | None = None) -> dict:
    chats, next_cursor = Chat.listing_for(user, limit, before)
    return {"chats": chats, "next_cursor": next_cursor}


@writes
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
