"""Request handlers, one module per resource; the errors they raise live in errors.py."""

from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..idempotency import idempotent
from ..models import Membership, User

# The errors handlers raise, importable beside the decorators they use.
__all__ = ["BadRequest", "Conflict", "Forbidden", "NotFound", "idempotent", "own_account", "require_member"]


def threaded(handler):
    """Keep this handler in the threadpool, off the event loop: its work grows with data (or, with @hashes, it
    hashes a password)."""
    handler.threaded = True
    return handler


def writes(handler):
    """Mark a handler that writes: it would wait for the write lock, so it leaves the event loop while one is held."""
    handler.writes = True
    return handler


def hashes(handler):
    """Mark a handler that hashes a password: it runs in the threadpool only when one of the hashing turns is free,
    and waits for one on the event loop (passwords.Passwords.turn)."""
    handler.hashes = True
    return threaded(handler)


def is_hashing(handler) -> bool:
    return getattr(handler, "hashes", False)


def is_threaded(handler) -> bool:
    return getattr(handler, "threaded", False)


def is_writer(handler) -> bool:
    return getattr(handler, "writes", False)


def require_member(chat_id: int, user_id: int) -> None:
    """Let members through; tell others whether the chat is missing (404) or not theirs (403)."""
    if Membership.exists(chat_id, user_id):
        return
    # A chat whose last member left is gone, even while its messages are still being purged.
    if not Membership.select(Membership.id).where(Membership.chat == chat_id).exists():
        raise NotFound(f"chat {chat_id} does not exist")
    raise Forbidden(f"you are not a member of chat {chat_id}")


def own_account(user: int, user_id: int) -> User:
    """The account at user_id when it is the caller's own; 404 when there is none, 403 when it is someone else's."""
    if user_id != user:
        if User.get_or_none(User.id == user_id) is None:
            raise NotFound(f"user {user_id} does not exist")
        raise Forbidden("you can only change your own account")
    return User.get_by_id(user)
