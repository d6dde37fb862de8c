"""Times: the clock the database is written with, the API's RFC 3339 form of a stored time, and durations as
settings give them (CHAT_EVENT_RETENTION, --session-idle)."""

import datetime
import re

DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: datetime.datetime | str | None) -> str | None:
    """A stored UTC time as RFC 3339: SQLite hands back Peewee's text form, PostgreSQL a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace(" ", "T", 1) + "Z"
    return value.isoformat() + "Z"


def seconds(text: str) -> int:
    """A duration such as 604800, 90s, 30m, 12h or 7d, in seconds."""
    match = DURATION.fullmatch(text.strip())
    if not match or int(match[1]) < 1:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 30m or 90s")
    return int(match[1]) * UNITS[match[2]]
