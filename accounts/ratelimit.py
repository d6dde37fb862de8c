"""Rate limits on password guessing and registration, per client address and per account name, and on invitations
and uploads per user (`limits`, moving window). The state lives in the storage the URL names: `memory://` holds for one
process only (moving_window.py, which forgets a key once its hits have left their window); `redis://host:port` holds
across `--workers` and hosts."""

import math
import os
import re
import time
from dataclasses import dataclass

import limits
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..core import names
from ..core.errors import TooManyRequests
from .moving_window import MovingWindowMemory

DEFAULTS = {
    "CHAT_LOGIN_RATE": "10/300",
    "CHAT_LOGIN_ADDRESS_RATE": "30/300",
    "CHAT_REGISTER_RATE": "10/3600",
    "CHAT_INVITE_RATE": "50/3600",
    "CHAT_UPLOAD_RATE": "60/3600",
    "CHAT_RATE_LIMIT_STORAGE": "memory://",
}
RATE = re.compile(r"(\d+)/(\d+)")


def parse_rate(text: str) -> limits.RateLimitItem | None:
    """`N/SECONDS` (N requests in any SECONDS-long window), or `off` for no limit."""
    if text.strip().lower() == "off":
        return None
    match = RATE.fullmatch(text.strip())
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"a rate is N/SECONDS, such as 10/300, or off; not {text!r}")
    return limits.RateLimitItemPerSecond(int(match[1]), int(match[2]), namespace="chat")


@dataclass(frozen=True)
class Limit:
    rate: limits.RateLimitItem | None
    scope: str
    what: str


class RateLimits:
    """Failed logins are counted per name and per address; registrations per address; invitations and uploads per
    user. A successful login resets nothing, so one address that knows the password cannot clear the count another
    address is running up."""

    def __init__(
        self, login: str, login_address: str, register: str, storage: str, invite: str = "off", upload: str = "off"
    ):
        self._window = MovingWindowRateLimiter(
            MovingWindowMemory() if storage == "memory://" else storage_from_string(storage)
        )
        self.login_name = Limit(parse_rate(login), "login-name", "failed logins for this name")
        self.login_address = Limit(parse_rate(login_address), "login-address", "failed logins from your address")
        self.register = Limit(parse_rate(register), "register-address", "registrations from your address")
        self.invite = Limit(parse_rate(invite), "invite-user", "invitations from you")
        self.upload = Limit(parse_rate(upload), "upload-user", "uploads from you")

    @classmethod
    def from_environment(cls, env=os.environ) -> "RateLimits":
        setting = {name: env.get(name, default) for name, default in DEFAULTS.items()}
        return cls(
            setting["CHAT_LOGIN_RATE"],
            setting["CHAT_LOGIN_ADDRESS_RATE"],
            setting["CHAT_REGISTER_RATE"],
            setting["CHAT_RATE_LIMIT_STORAGE"],
            setting["CHAT_INVITE_RATE"],
            setting["CHAT_UPLOAD_RATE"],
        )

    @property
    def storage(self):
        return self._window.storage

    def storage_answers(self) -> bool:
        return self._window.storage.check()

    def check(self, limit: Limit, key: str) -> None:
        """Refuse with 429 when the limit is used up; count nothing."""
        if limit.rate is not None and not self._window.test(limit.rate, limit.scope, key):
            self._refuse(limit, key)

    def hit(self, limit: Limit, key: str) -> None:
        """Count one; refuse with 429 when that was one too many."""
        if limit.rate is not None and not self._window.hit(limit.rate, limit.scope, key):
            self._refuse(limit, key)

    def count(self, limit: Limit, key: str) -> None:
        """Count one, never refusing: the request it counts has already been answered."""
        if limit.rate is not None:
            self._window.hit(limit.rate, limit.scope, key)

    def _refuse(self, limit: Limit, key: str) -> None:
        reset = self._window.get_window_stats(limit.rate, limit.scope, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise TooManyRequests(f"too many {limit.what}; retry in {wait} s", retry_after=wait)


def name_key(name: str) -> str:
    """What failed logins for a name are counted under: the key that decides look-alikes (core/names.py), so that
    every spelling that logs in as one user shares that user's count."""
    return names.lookup_key(name) or name


rate_limits = RateLimits.from_environment({})


def configure(env=os.environ) -> RateLimits:
    """Read the limits from the environment, as `chat-server` and create_app do; the handlers use the result."""
    global rate_limits
    rate_limits = RateLimits.from_environment(env)
    return rate_limits
