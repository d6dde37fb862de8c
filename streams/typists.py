"""Who is typing where: `typing` events to a chat's other members, ephemeral (pubsub.py), and cheap.

A typing client sends `start` about every RESEND_MS; its members treat it as over after EXPIRES_MS without one.
Every process hears every typing message on the channel, and remembers the last for each user and chat. So a
`start` (or a `stop`) within MIN_START_SECONDS of the same one is dropped whichever process published it (the client
still gets 204), and a message sent through any process stops its sender's typing there. Clients also clear a
member's typing on their `message.created`.
"""

import json
import threading
import time

from .pubsub import publish

EXPIRES_MS = 8_000
RESEND_MS = 5_000
MIN_START_SECONDS = 2.0
FORGET_SECONDS = EXPIRES_MS / 1000  # a start this old has expired at every client
SWEEP_AT = 10_000  # entries kept before the expired ones are swept out
MAX_LISTED = 1_000  # typists GET /api/chats/{id}/typing lists at most (the spec's TypingList)


class Typists:
    """The last typing message for each (user, chat), from any process: [active, when, when it last started]."""

    def __init__(self):
        self.last: dict[tuple[int, int], list] = {}
        self.in_chat: dict[int, set[int]] = {}  # chat -> the users with an entry in `last`
        self.lock = threading.Lock()  # handlers run in threads as well as on the event loop

    def _record(self, key: tuple[int, int], active: bool, now: float) -> None:
        if len(self.last) >= SWEEP_AT:
            self.last = {key: value for key, value in self.last.items() if now - value[1] < FORGET_SECONDS}
            self.in_chat = {}
            for user, chat in self.last:
                self.in_chat.setdefault(chat, set()).add(user)
        was = self.last.get(key)
        self.last[key] = [active, now, now if active else (was[2] if was else 0.0)]
        self.in_chat.setdefault(key[1], set()).add(key[0])

    def typing_in(self, chat: int, viewer: int) -> list[dict]:
        """The chat's members typing now (the viewer aside), longest typing first, as `typing` events say it, with
        the time left before each expires."""
        now = time.monotonic()
        with self.lock:
            found = []
            for user in self.in_chat.get(chat, ()):
                active, at, started = self.last[(user, chat)]
                left = EXPIRES_MS - int((now - at) * 1000)
                if active and left > 0 and user != viewer:
                    found.append((started, user, left))
        found.sort()
        return [_typing(chat, user, True, left) for _, user, left in found[:MAX_LISTED]]

    def start(self, user: int, chat: int) -> bool:
        """Whether a `start` now should go out: not within MIN_START_SECONDS of the last one."""
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is not None and now - was[2] < MIN_START_SECONDS:
                return False
            self._record((user, chat), True, now)
            return True

    def stop(self, user: int, chat: int) -> bool:
        """Whether an explicit `stop` should go out (its start may have gone out through another process): not
        within MIN_START_SECONDS of the last stop."""
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is not None and not was[0] and now - was[1] < MIN_START_SECONDS:
                return False
            self._record((user, chat), False, now)
            return True

    def sent(self, user: int, chat: int) -> bool:
        """Whether a message sent now should stop typing: when it started and has neither stopped nor expired."""
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is None or not was[0] or now - was[1] >= FORGET_SECONDS:
                return False
            self._record((user, chat), False, now)
            return True

    def heard(self, user: int, chat: int, active: bool) -> None:
        """A typing message came from the channel (any process's, this one's too): so a send here stops typing
        started through another process, and the throttle holds across them."""
        with self.lock:
            self._record((user, chat), active, time.monotonic())


typists = Typists()


def _typing(chat: int, user: int, active: bool, expires_in_ms: int) -> dict:
    return {
        "chat_id": chat,
        "user_id": user,
        "active": active,
        "expires_in_ms": expires_in_ms if active else 0,
        "resend_in_ms": RESEND_MS,
    }


def _publish(chat: int, user: int, active: bool) -> None:
    data = json.dumps(_typing(chat, user, active, EXPIRES_MS), separators=(",", ":"))
    publish({"k": "typing", "chat": chat, "user": user, "active": active, "data": data})


def change(chat: int, user: int, op: str) -> None:
    """`start` or `stop` typing (the caller checked membership), with a database connection open."""
    if op == "start":
        if typists.start(user, chat):
            _publish(chat, user, True)
    elif typists.stop(user, chat):
        _publish(chat, user, False)


def message_sent(chat: int, user: int) -> None:
    """The user sent a message to the chat: their typing there is over."""
    if typists.sent(user, chat):
        _publish(chat, user, False)
