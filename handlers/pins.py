"""Pins: a chat's pinned messages; pin and unpin."""

from ..conversations import pins
from ..edge.offload import writes


def list_pins(user: int, chat_id: int) -> dict:
    return pins.listed(chat_id, user)


@writes
def pin_message(user: int, chat_id: int, message_id: int) -> dict:
    pins.change(chat_id, message_id, user, pin=True)
    return {"status": "ok"}


@writes
def unpin_message(user: int, chat_id: int, message_id: int) -> dict:
    pins.change(chat_id, message_id, user, pin=False)
    return {"status": "ok"}
