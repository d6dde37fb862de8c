"""A member's alert settings for a chat: `notify` (all, mentions or none) and `muted_until`. They change no count;
they are what a client alerts on, and whether a mention makes a `mention` event (mentions.py)."""

import datetime
import re

from ..core.times import rfc3339
from ..models import Membership, db
from . import rules

# The form of ChatSettingsChange.muted_until (openapi/chat.yaml), read into parts.
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:[Zz]|([+-])(\d\d):(\d\d))")


def parse_time(text: str) -> datetime.datetime | None:
    """An RFC 3339 time as naive UTC; None for "" (unmute). A day past its month's end counts on into the next, so
    every value the contract's pattern accepts is a time."""
    if text == "":
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = _TIME.fullmatch(text).groups()
    start = datetime.datetime(max(int(year), 1), int(month), 1, int(hour), int(minute), int(second))
    try:
        moment = start + datetime.timedelta(days=int(day) - 1, microseconds=int((fraction or "0").ljust(6, "0")))
        if sign:
            offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
            moment = moment - offset if sign == "+" else moment + offset
    except OverflowError:  # past the years datetime holds: as good as forever (or long ago)
        return datetime.datetime.max if int(year) > 1 else datetime.datetime.min
    return moment


def of(chat_id: int, user_id: int) -> dict:
    rules.require_member(chat_id, user_id)
    return _read(chat_id, user_id)


def _read(chat_id: int, user_id: int) -> dict:
    notify, muted = (
        Membership.select(Membership.notify, Membership.muted_until)
        .where(Membership.chat == chat_id, Membership.user == user_id)
        .tuples()
        .first()
    )
    return {"notify": notify, "muted_until": rfc3339(muted)}


def change(chat_id: int, user_id: int, changes: dict) -> dict:
    rules.require_member(chat_id, user_id)
    values = {}
    if "notify" in changes:
        values[Membership.notify] = changes["notify"]
    if "muted_until" in changes:
        values[Membership.muted_until] = parse_time(changes["muted_until"])
    with db.atomic():
        Membership.update(values).where(Membership.chat == chat_id, Membership.user == user_id).execute()
    return _read(chat_id, user_id)
