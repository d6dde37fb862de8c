"""Who may do what to a chat's conversation: one function per rule, so that chat roles change one place."""

from ..core.errors import NotFound
from ..models import Membership


def require_member(chat_id: int, user_id: int) -> None:
    """Let members through; to anyone else the chat does not exist (404), so that its id reveals nothing."""
    if not Membership.exists(chat_id, user_id):
        raise NotFound(f"chat {chat_id} does not exist")


def may_pin(chat_id: int, user_id: int) -> bool:
    """Whether a member of the chat (require_member let them through) may pin and unpin its messages: any member,
    until chats have roles; the one place a roles change touches."""
    return True
