"""Request handlers, one module per resource, and the errors they raise."""

from ..models import Chat, Membership


class ApiError(Exception):
    """An error a client caused; app.py turns it into {"error": message} with this status."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


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
