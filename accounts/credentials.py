"""Credentials: how long a session lives (--session-idle, --session-lifetime), and which new passwords are refused."""

import datetime
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BadRequest
from ..core.times import seconds

DEFAULTS = {"CHAT_SESSION_IDLE": "14d", "CHAT_SESSION_LIFETIME": "90d"}
# The shortest idle timeout: the idle clock moves at a tenth of it (models.Session.clock_step), so a session that
# makes a request more often than every 54 s of a 60 s timeout stays live, a write skipped on a busy lock included.
MIN_IDLE_SECONDS = 60
# Package data beside this module (pyproject.toml), found from __file__ like the spec (app.py says why).
COMMON_PASSWORDS = Path(__file__).parent.parent / "data" / "common-passwords.txt"


@dataclass(frozen=True)
class SessionSettings:
    """A session ends `idle` seconds after its last request, and `lifetime` seconds after login in any case."""

    idle: int
    lifetime: int

    @classmethod
    def from_environment(cls, environ=os.environ) -> "SessionSettings":
        """The settings in `environ` (CHAT_SESSION_*, durations such as 14d); raises ValueError for bad values."""

        def get(name: str) -> int:
            try:
                return seconds(environ.get(name) or DEFAULTS[name])
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None

        idle = get("CHAT_SESSION_IDLE")
        if idle < MIN_IDLE_SECONDS:
            raise ValueError(f"CHAT_SESSION_IDLE: at least {MIN_IDLE_SECONDS}s, so that an active session stays live")
        return cls(idle=idle, lifetime=get("CHAT_SESSION_LIFETIME"))

    @property
    def idle_timeout(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.idle)

    @property
    def max_age(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.lifetime)


sessions = SessionSettings.from_environment({})


def configure(environ=os.environ) -> SessionSettings:
    """Read the session settings from the environment, as `chat-server` and create_app do."""
    global sessions
    sessions = SessionSettings.from_environment(environ)
    return sessions


@functools.cache
def common_passwords() -> frozenset[str]:
    """The lowercase common passwords of data/common-passwords.txt, read once per process."""
    with COMMON_PASSWORDS.open(encoding="utf-8") as lines:
        return frozenset(line.rstrip("\n") for line in lines if line.strip() and not line.startswith("#"))


def _without_spaces(text: str) -> str:
    return "".join(text.split()).casefold()


def check_new_password(password: str, name: str) -> None:
    """Refuse (400) a new password that a guesser tries first: a common one, or the account's own name.

    Only new passwords are checked, at registration and on a change; older ones keep logging in.
    """
    if password.strip().lower() in common_passwords():
        raise BadRequest("that password is one of the 10,000 most common passwords; choose a less guessable one")
    if _without_spaces(password) == _without_spaces(name):
        raise BadRequest("the password must not be your name")
