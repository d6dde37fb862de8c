"""Who sees what: an event log row as streams carry it, and the audience of one session, which follows its user's
joins and leaves as the rows go by."""

import json
from dataclasses import dataclass

from ..models import CHAT_INVITED, CHAT_READ, MEMBER_ADDED, MEMBER_LEFT, MENTION, SESSION_ENDED, Event


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    kind: str
    chat_id: int | None
    user_id: int | None
    session_id: int | None
    data: str

    def as_json(self) -> dict:
        return {"id": self.id, "type": self.kind, "data": json.loads(self.data)}


class Audience:
    """What one session may see: the events of the chats its user is in at the time of each event.

    It follows the user's joins and leaves as the rows go by, so it must see every row in id order.
    """

    __slots__ = ("chats", "session", "user")

    END = None  # admits() says: this stream is over (its session ended)

    def __init__(self, user: int, session: int, chats: set[int]):
        self.user, self.session, self.chats = user, session, chats

    def admits(self, row: Row) -> bool | None:
        if row.user_id == self.user:
            if row.kind == SESSION_ENDED:
                return self.END if row.session_id in (None, self.session) else False
            if row.kind == MEMBER_ADDED:
                self.chats.add(row.chat_id)
                return True
            if row.kind == MEMBER_LEFT:
                was_member = row.chat_id in self.chats
                self.chats.discard(row.chat_id)
                return was_member
            if row.kind == CHAT_READ:
                return row.session_id != self.session and row.chat_id in self.chats
            if row.kind in (CHAT_INVITED, MENTION):  # recorded with no chat: only the invitee, or the one mentioned
                return True
        return row.kind not in (CHAT_READ, SESSION_ENDED) and row.chat_id in self.chats

    @classmethod
    def resuming(
        cls, user: int, session: int, after: int, upto: int, chats_at_upto: set[int]
    ) -> tuple["Audience", dict[int, int]]:
        """The audience as it was right after event `after`, from the chats as event `upto` left them, and where a
        replay of (after, upto] starts in each chat it must read: `after` in the chats the user was in then, and
        right before the join in those the user joined since (nothing earlier there is theirs to see)."""
        chats = set(chats_at_upto)
        joined = {}
        seen = set()
        for event_id, chat, kind in Event.memberships_changed(user, after, upto):
            if chat not in seen:  # the first join or leave after `after` tells whether the user was in then
                seen.add(chat)
                if kind == MEMBER_LEFT:
                    chats.add(chat)
                else:
                    chats.discard(chat)
                    joined[chat] = event_id - 1
        return cls(user, session, chats), {**dict.fromkeys(chats, after), **joined}
