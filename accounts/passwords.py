"""Passwords: argon2id hashing under a budget (at most N hashing requests at once, so memory peaks at N times the
cost of one hash), and the account operations that hash or verify one.

The hasher is built when the server starts (`configure`, from create_app), never on import: building one hashes
a dummy password, 64 MiB and tens of milliseconds with the secure profile."""

import contextlib
import os
import secrets
import threading
import time

import anyio
import argon2

from ..core.errors import Unavailable
from ..models import User

PROFILES = {
    "secure": argon2.profiles.RFC_9106_LOW_MEMORY,
    # For load tests and the test suite only: it makes hashing nearly free.
    "cheapest": argon2.profiles.CHEAPEST,
}
DEFAULT_CONCURRENCY = os.cpu_count() or 1
DEFAULT_WAIT_SECONDS = 3.0
# How often a request waiting for its turn looks again; a threading semaphore works on whichever event loop
# a request runs in, where an asyncio one is bound to the first.
POLL_SECONDS = 0.01


class Passwords:
    """Hash and verify passwords. A request that hashes takes a `turn()` first (edge/offload.py does this for `@hashes`
    handlers): beyond `concurrency` at once, it waits up to `wait_seconds`, then is refused (503).

    Each secure hash takes 64 MiB for tens of milliseconds, so a burst of logins or registrations would otherwise
    take as much memory as there are threads in the pool.
    """

    def __init__(
        self,
        profile: str = "secure",
        concurrency: int = DEFAULT_CONCURRENCY,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ):
        if concurrency < 1:
            raise ValueError("password hashing needs at least one slot")
        self._hasher = argon2.PasswordHasher.from_parameters(PROFILES[profile])
        self._turns = threading.BoundedSemaphore(concurrency)
        self._wait_seconds = wait_seconds
        # Verified against when a name is unknown, so that a wrong name costs as much as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    @contextlib.asynccontextmanager
    async def turn(self):
        """Wait on the event loop for one of the `concurrency` turns of a request that hashes, then 503.

        The request runs in the threadpool only once it has its turn, so a flood of logins waits here instead
        of holding every pool thread (on PostgreSQL every other request needs one too).
        """
        deadline = time.monotonic() + self._wait_seconds
        while not self._turns.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise Unavailable("the server is busy checking passwords; retry in a moment", retry_after=1)
            await anyio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            self._turns.release()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether the password matches; with no hash (unknown user) it costs a hash and is False."""
        try:
            self._hasher.verify(password_hash or self._dummy_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        return password_hash is not None


_hasher: Passwords | None = None


def configure(profile: str = "secure", concurrency: int = DEFAULT_CONCURRENCY) -> Passwords:
    """Build this process's hasher (create_app does, at start)."""
    global _hasher
    _hasher = Passwords(profile, concurrency)
    return _hasher


def hasher() -> Passwords:
    """The hasher configure() built; a secure one, built now, for a script that never called it."""
    return _hasher or configure()


def register(name: str, password: str, email: str) -> User:
    return User.register(name, hasher().hash(password), email)


def authenticate(name: str, password: str) -> User | None:
    """The user with this name and password, else None; unknown names cost a hash too."""
    user = User.by_name(name)
    return user if hasher().verify(user.password_hash if user else None, password) else None


def verify(user: User, password: str) -> bool:
    return hasher().verify(user.password_hash, password)


def change(user: User, password: str, keep_session: int) -> None:
    """Store a new password and end every other session of the user, together: a thief holding one is out."""
    user.change_password(hasher().hash(password), keep_session)
