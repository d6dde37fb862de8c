"""Reactions to a message: add yours, take it back, and see who reacted with an emoji."""

from ..conversations import reactions
from ..edge.offload import writes


@writes
def add_reaction(user: int, chat_id: int, message_id: int, emoji: str) -> dict:
    return reactions.change(chat_id, message_id, user, emoji, add=True)


@writes
def remove_reaction(user: int, chat_id: int, message_id: int, emoji: str) -> dict:
    return reactions.change(chat_id, message_id, user, emoji, add=False)


def list_reactors(user: int, chat_id: int, message_id: int, emoji: str, limit: int = 50, after: int | None = None):
    return reactions.reactors(chat_id, message_id, user, emoji, limit, after)
