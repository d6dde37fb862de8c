"""Search across the chats you are in (the query language is storage/search.py's)."""

from ..edge.offload import threaded
from ..models import Message
from ..storage import search
from . import require_member


@threaded  # its work grows with the number of messages that match
def search_messages(user: int, q: str, chat_id: int | None = None, limit: int = 20, before: int | None = None):
    if chat_id is not None:
        require_member(chat_id, user)
    return {"messages": Message.search(user, search.terms(q), chat_id, limit, before)}
