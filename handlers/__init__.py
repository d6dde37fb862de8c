"""Request handlers, one module per resource; the errors they raise live in errors.py."""

from ..errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from ..models import Chat, Membership

__all__ = ["ApiError", "BadRequest", "Conflict", "Forbidden", "NotFound", "TooManyRequests", "require_member"]


def threaded(handler):
    """Keep this handler in the threadpool, off the event loop: it hashes a password, or its work grows with data."""
    handler.threaded = True
    return handler


def is_threaded(handler) -> bool:
    return getattr(handler, "threaded", False)


def require_member(chat_id: int, user_id: int) -> None:
    """Let members through; tell others whether the chat is missing (404) or not theirs (403)."""
    if Membership.exists(chat_id, user_id):
        return
    if not Chat.select(Chat.id).where(Chat.id == chat_id).exists():
        raise NotFound(f"chat {chat_id} does not exist")
    raise Forbidden(f"you are not a member of chat {chat_id}")
