"""Request handlers, one module per resource, and the two access checks most of them share. They raise the error
types of core/errors.py; the edge renders them (edge/responses.py)."""

from ..core.errors import Forbidden, NotFound
from ..models import Membership, User


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
