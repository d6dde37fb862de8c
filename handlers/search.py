"""Search across the chats you are in (the query language is storage/search.py's)."""

from ..edge import search_lane
from ..models import Message
from ..storage import search
from . import require_member


async def search_messages(user: int, q: str, chat_id: int | None = None, limit: int = 20, before: int | None = None):
    """Runs in the search lane (edge/search_lane.py), not the threadpool: its work grows with the messages read."""
    found = search.bounded_terms(q)
    if not found and chat_id is None:
        return {"messages": []}
    return {"messages": await search_lane.lane().run(_search, user, found, chat_id, limit, before)}


def _search(seconds_left: float, user: int, found: list[search.Term], chat_id, limit: int, before):
    if chat_id is not None:
        require_member(chat_id, user)
    return Message.search(user, found, chat_id, limit, before, seconds_left)
