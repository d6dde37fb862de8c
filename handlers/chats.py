"""Chats: list yours, create, rename and leave."""

from ..models import Chat, Membership
from . import require_member, threaded


def list_chats(user: int) -> dict:
    return {"chats": Chat.listing_for(user)}


def create_chat(user: int, body: dict):
    chat = Chat.create_with_member(body["title"], user)
    return {"status": "ok", "id": chat.id}, 201, {"Location": f"/api/chats/{chat.id}"}


def rename_chat(user: int, chat_id: int, body: dict) -> dict:
    require_member(chat_id, user)
    Chat.rename(chat_id, body["title"])
    return {"status": "ok"}


@threaded
def leave_chat(user: int, chat_id: int) -> dict:
    require_member(chat_id, user)
    Membership.leave(chat_id, user)
    return {"status": "ok"}
