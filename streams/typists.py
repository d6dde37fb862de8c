"""Who is typing where: `typing` events to a chat's other members, ephemeral (pubsub.py), and cheap.

A typing client sends `start` about every RESEND_MS; its members treat it as over after EXPIRES_MS without one.
Every process hears every typing message on the channel, and remembers the last for each user and chat. So the
throttle (Typists) holds whichever process a request reaches: a repeat too soon is dropped, and the client still
gets 204. A message sent through any process stops its sender's typing there. Clients also clear a
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
    """The last typing message for each (user, chat), from any process: [active, when, the two last starts (older
    first), the last stop].

    A `start` goes out unless two went out in the last MIN_START_SECONDS, or, while the typing is on, one did (a
    re-send too soon). A `stop` goes out while the typing is on, or else once per MIN_START_SECONDS. However a client
    alternates them, at most two starts and two stops go out in any MIN_START_SECONDS.
    """

    def __init__(self):
        self.last: dict[tuple[int, int], list] = {}
        self.in_chat: dict[int, set[int]] = {}  # chat -> the users with an entry in `last`
        self.sweep_at = SWEEP_AT
        self.lock = threading.Lock()  # handlers run in threads as well as on the event loop

    def _record(self, key: tuple[int, int], active: bool, now: float) -> None:
        if len(self.last) >= self.sweep_at:
            self.last = {key: value for key, value in self.last.items() if now - value[1] < FORGET_SECONDS}
            self.in_chat = {}
            for user, chat in self.last:
                self.in_chat.setdefault(chat, set()).add(user)
            self.sweep_at = max(SWEEP_AT, 2 * len(self.last))  # not again until it has doubled: amortized O(1)
        never = -FORGET_SECONDS
        _, _, older, newer, stopped = self.last.get(key) or (False, never, never, never, never)
        if active:
            older, newer = newer, now
        self.last[key] = [active, now, older, newer, stopped if active else now]
        self.in_chat.setdefault(key[1], set()).add(key[0])

    def start(self, user: int, chat: int) -> bool:
        """Whether a `start` now should go out."""
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is not None and now - (was[3] if was[0] else was[2]) < MIN_START_SECONDS:
                return False
            self._record((user, chat), True, now)
            return True

    def stop(self, user: int, chat: int) -> bool:
        """Whether an explicit `stop` should go out (its start may have gone out through another process)."""
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is not None and not was[0] and now - was[4] < MIN_START_SECONDS:
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
        now = time.monotonic()
        with self.lock:
            was = self.last.get((user, chat))
            if was is not None and was[0] == active and now - was[1] < MIN_START_SECONDS:
                return  # what this process recorded as it published (or a copy): one start, not two
            self._record((user, chat), active, now)

    def typing_in(self, chat: int, viewer: int) -> list[dict]:
        """The chat's members typing now (the viewer aside), longest typing first, as `typing` events say it, with
        the time left before each expires."""
        now = time.monotonic()
        with self.lock:
            found = []
            for user in self.in_chat.get(chat, ()):
                active, at, _, started, _ = self.last[(user, chat)]
                left = EXPIRES_MS - int((now - at) * 1000)
                if active and left > 0 and user != viewer:
                    found.append((started, user, left))
        found.sort()
        return [_typing(chat, user, True, left) for _, user, left in found[:MAX_LISTED]]


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
