"""Typing and presence: say you are typing in a chat, set your idle state and status text, and look up who is
online among the people you share a chat with. Their changes reach streams as ephemeral events (streams/)."""

from connexion import NoContent

from ..conversations import rules
from ..edge.cookies import session_id
from ..edge.offload import writes
from ..streams import fanout, presence, typists


def list_typing(user: int, chat_id: int) -> dict:
    rules.require_member(chat_id, user)
    return {"typing": typists.typists.typing_in(chat_id, user)}


def set_typing(user: int, chat_id: int, body: dict):
    rules.require_member(chat_id, user)
    typists.change(chat_id, user, body["op"])
    return NoContent, 204


@writes
def set_presence(user: int, token_info: dict, body: dict) -> dict:
    return presence.set_state(
        user, session_id(token_info), body.get("state"), body.get("status_text"), fanout.broker.presence.settings
    )


def get_presence(user: int, user_ids: list[int]) -> dict:
    return {"presence": presence.current(user, user_ids)}
