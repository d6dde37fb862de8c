"""Who is online: presence from the event streams open on every process and host, pushed to the people who share a
chat with each user as ephemeral `presence` events (pubsub.py), never polled for.

The shared view lives in the database, which every process and host already shares:

- each process that holds streams registers (PresenceProcess) and says it is alive every `sweep` seconds;
- each session with a stream open on a process has one PresenceStream row there, written in batches as streams
  open and close (only a session's first stream and its last one write), with the session's idle flag;
- UserPresence holds what was last published for each user, and their status text.

A user is `online` while any of their streaming sessions on a live process is active, `idle` when all of them said
so, and `offline` otherwise. Going offline waits `grace` seconds (a reconnect within it changes nothing), and a
process silent for `timeout` seconds is dead: its streams stop counting at once. Every process sweeps: it finds
the users whose grace is over and the dead processes, and publishes their users offline; a compare-and-set on
UserPresence publishes each change once however many processes sweep.

A change is computed once, by the process where it happens, and published once on the channel; each process then
hands it to its own streams whose user shares a chat with that user (fanout.Broker), with one query for that
user's chats. So a user who shares chats with 10,000 people costs one transaction, one message on the channel,
and per process one query and one pass over its open streams: no poll, nothing quadratic.
"""

import asyncio
import collections
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass

from peewee import PostgresqlDatabase, Value, fn

from ..core.times import seconds
from ..models import Membership, PresenceProcess, PresenceStream, User, UserPresence
from ..storage.engines import db, in_thread
from .pubsub import publish

log = logging.getLogger("chat")

DEFAULTS = {"CHAT_PRESENCE_GRACE": "30", "CHAT_PRESENCE_TIMEOUT": "60"}
FLUSH_SECONDS = 0.05  # opens and closes wait this long to be written together
TIDY_EVERY = 30  # sweeps between looks for rows of processes that are gone
ONLINE, IDLE, OFFLINE = "online", "idle", "offline"


@dataclass(frozen=True)
class Settings:
    grace: float
    timeout: float

    @classmethod
    def from_environment(cls, environ) -> "Settings":
        grace = seconds(environ.get("CHAT_PRESENCE_GRACE") or DEFAULTS["CHAT_PRESENCE_GRACE"])
        timeout = seconds(environ.get("CHAT_PRESENCE_TIMEOUT") or DEFAULTS["CHAT_PRESENCE_TIMEOUT"])
        if grace < 0 or timeout <= 0:
            raise ValueError("CHAT_PRESENCE_GRACE must be 0 or more and CHAT_PRESENCE_TIMEOUT above 0")
        return cls(grace, timeout)

    @property
    def sweep(self) -> float:
        """How often each process says it is alive and looks for users to publish offline."""
        return max(min(self.grace or self.timeout, self.timeout) / 3, 0.2)


def _message(user: int, state: str, status_text: str) -> dict:
    data = json.dumps({"user_id": user, "state": state, "status_text": status_text}, separators=(",", ":"))
    return {"k": "presence", "user": user, "data": data}


def _locked(users) -> dict[int, UserPresence]:
    """The users' UserPresence rows, created as offline where missing, locked on PostgreSQL (in id order); an
    account deleted meanwhile has none."""
    existing = User.select(User.id, Value(OFFLINE), Value("")).where(User.id.in_(sorted(users)))
    fields = [UserPresence.user, UserPresence.state, UserPresence.status_text]
    UserPresence.insert_from(existing, fields).on_conflict_ignore().execute()
    rows = UserPresence.select().where(UserPresence.user.in_(sorted(users))).order_by(UserPresence.user)
    if isinstance(db.obj, PostgresqlDatabase):
        rows = rows.for_update("FOR NO KEY UPDATE")
    return {row.user_id: row for row in rows}


def _streaming(users, alive_after: float) -> dict[int, tuple[int, int]]:
    """user -> (sessions streaming on live processes, how many of them are active)."""
    active = fn.SUM(PresenceStream.idle.cast("integer"))
    rows = (
        PresenceStream.select(PresenceStream.user_id, fn.COUNT(PresenceStream.session_id), active)
        .join(PresenceProcess, on=(PresenceProcess.id == PresenceStream.process_id))
        .where(PresenceStream.user_id.in_(list(users)), PresenceProcess.seen_at > alive_after)
        .group_by(PresenceStream.user_id)
        .tuples()
    )
    return {user: (count, count - int(idle or 0)) for user, count, idle in rows}


def _settle(users, settings: Settings, now: float, *, final: bool = False) -> list[dict]:
    """Bring the users' published presence in line with their streams, in a transaction; the messages to publish.
    A user with no stream left is published offline only when `final` or their grace is over."""
    if not users:
        return []
    rows = _locked(users)  # first: the streams are then read as the users' locks let them be
    streaming = _streaming(users, now - settings.timeout)
    published = []
    for user, row in rows.items():
        count, active = streaming.get(user, (0, 0))
        state = ONLINE if active else IDLE if count else OFFLINE
        if state == OFFLINE:
            if row.state == OFFLINE:
                continue
            if row.offline_since is None:
                row.offline_since = now
            if not (final or now - row.offline_since >= settings.grace):
                UserPresence.update(offline_since=row.offline_since).where(UserPresence.user == user).execute()
                continue
        if state == row.state and row.offline_since is None:
            continue
        UserPresence.update(state=state, offline_since=None).where(UserPresence.user == user).execute()
        if state != row.state:
            published.append(_message(user, state, row.status_text))
    return published


def _publish(messages: list[dict]) -> None:
    for message in messages:
        publish(message)


class Presence:
    """This process's part: its registration, the sessions it streams to, and the sweep."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process: int | None = None
        self.local: collections.Counter[tuple[int, int]] = collections.Counter()  # (user, session) -> streams
        self.dirty: set[tuple[int, int]] = set()
        self.flushing: asyncio.Task | None = None
        self.sweeping: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sweeps = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin on this loop (again, on a new one): a no-op when begun on it already."""
        if self.loop is loop and self.sweeping is not None:
            return
        self.close()
        self.local.clear()
        self.dirty.clear()
        self.process = None
        self.loop = loop
        self.sweeping = loop.create_task(self._sweep_forever(), name="presence sweep")

    def close(self) -> None:
        """Stop flushing and sweeping (from any thread)."""
        loop = self.loop
        for task in (self.flushing, self.sweeping):
            if task is not None and loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
        self.flushing = self.sweeping = None

    def opened(self, user: int, session: int) -> None:
        """A stream opened (on the event loop): written in the next batch, as active (opening a stream is activity,
        also for a session that has another open here)."""
        self.local[(user, session)] += 1
        self._changed((user, session))

    def closed(self, user: int, session: int) -> None:
        key = (user, session)
        if self.local.get(key, 0) <= 1:
            self.local.pop(key, None)
            self._changed(key)
        else:
            self.local[key] -= 1

    def _changed(self, key: tuple[int, int]) -> None:
        self.dirty.add(key)
        if self.flushing is None and self.loop is not None:
            self.flushing = self.loop.create_task(self._flush_soon(), name="presence flush")

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(FLUSH_SECONDS)
            while self.dirty:
                batch, self.dirty = self.dirty, set()
                changes = {key: key in self.local for key in batch}
                try:
                    await in_thread(self._write, changes)
                except Exception:
                    log.exception("writing presence failed; trying again in 1 s")
                    self.dirty |= batch
                    await asyncio.sleep(1)
        finally:
            self.flushing = None

    def _register(self) -> None:
        if self.process is None:
            name = f"{socket.gethostname()}:{os.getpid()}"[:255]
            self.process = PresenceProcess.insert(name=name, seen_at=time.time()).execute()

    def _write(self, changes: dict[tuple[int, int], bool]) -> None:
        """Write which sessions stream here now, and publish what that changes (in a thread, with a connection)."""
        self._register()
        now = time.time()
        with db.atomic():
            opened = [{"process_id": self.process, "session_id": session, "user_id": user}
                      for (user, session), streaming in changes.items() if streaming]  # fmt: skip
            closed = [session for (_, session), streaming in changes.items() if not streaming]
            if opened:
                conflict = (PresenceStream.process_id, PresenceStream.session_id)
                PresenceStream.insert_many(opened).on_conflict(conflict_target=conflict, update={
                    PresenceStream.idle: False}).execute()  # fmt: skip
            if closed:
                PresenceStream.delete().where(
                    PresenceStream.process_id == self.process, PresenceStream.session_id.in_(closed)
                ).execute()
            published = _settle({user for user, _ in changes}, self.settings, now)
        _publish(published)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep)
            try:
                await in_thread(self.sweep)
            except Exception:
                log.exception("the presence sweep failed; trying again later")

    def sweep(self, now: float | None = None) -> None:
        """Say this process is alive; publish offline the users whose grace is over and those of dead processes."""
        now = time.time() if now is None else now
        settings, rejoin = self.settings, False
        with db.atomic():
            if self.process is not None:
                alive = PresenceProcess.update(seen_at=now).where(PresenceProcess.id == self.process).execute()
                rejoin = not alive  # swept as dead by another process while this one stalled: start over
            silent = PresenceProcess.select(PresenceProcess.id).where(PresenceProcess.seen_at <= now - settings.timeout)
            dead = [row[0] for row in silent.tuples()]
            self.sweeps += 1
            if self.sweeps % TIDY_EVERY == 0:  # rows a process wrote as it stopped, after its row went
                gone = PresenceStream.process_id.not_in(PresenceProcess.select(PresenceProcess.id))
                PresenceStream.delete().where(gone).execute()
            stranded = set()
            if dead:
                theirs = PresenceStream.select(PresenceStream.user_id).where(PresenceStream.process_id.in_(dead))
                stranded = {row[0] for row in theirs.tuples()}
                PresenceStream.delete().where(PresenceStream.process_id.in_(dead)).execute()
                PresenceProcess.delete().where(PresenceProcess.id.in_(dead)).execute()
            # Users published present with no stream on a live process (their process died before its rows were
            # written, say) start their grace now.
            live = PresenceStream.select(PresenceStream.user_id).join(
                PresenceProcess, on=(PresenceProcess.id == PresenceStream.process_id)
            )
            UserPresence.update(offline_since=now).where(
                UserPresence.state != OFFLINE,
                UserPresence.offline_since.is_null(),
                UserPresence.user.not_in(live),
                UserPresence.user.not_in(list(stranded) or [0]),
            ).execute()
            over = UserPresence.select(UserPresence.user).where(
                UserPresence.state != OFFLINE, UserPresence.offline_since <= now - settings.grace
            )
            due = {row[0] for row in over.tuples()}
            if stranded | due:
                _locked(stranded | due)  # all of them in one id order, as every other transaction takes them
            published = _settle(stranded, settings, now, final=True) + _settle(due - stranded, settings, now)
        if rejoin and self.loop is not None:
            self.loop.call_soon_threadsafe(self._rejoin)
        _publish(published)

    def _rejoin(self) -> None:
        self.process = None
        for key in self.local:
            self._changed(key)

    def leave(self) -> None:
        """This process stops (in a thread, with a connection): its streams stop counting now."""
        if self.process is None:
            return
        with contextlib.suppress(Exception), db.atomic():
            PresenceStream.delete().where(PresenceStream.process_id == self.process).execute()
            PresenceProcess.delete().where(PresenceProcess.id == self.process).execute()


def set_state(user: int, session: int, state: str | None, status_text: str | None, settings: Settings) -> dict:
    """PUT /api/presence: mark this session's streams idle or active, and set the status text; the user's presence
    after (the caller publishes nothing: this does)."""
    now = time.time()
    with db.atomic():
        _locked([user])
        if state is not None:
            PresenceStream.update(idle=state == IDLE).where(PresenceStream.session_id == session).execute()
        published = _settle([user], settings, now)
        row = UserPresence.get_by_id(user)
        if status_text is not None and status_text != row.status_text:
            UserPresence.update(status_text=status_text).where(UserPresence.user == user).execute()
            row.status_text = status_text
            published = [_message(user, row.state, status_text)]
    _publish(published)
    return {"user_id": user, "state": row.state, "status_text": row.status_text}


def current(viewer: int, user_ids: list[int]) -> list[dict]:
    """GET /api/presence: each asked-for user's presence as `viewer` may see it, in the order asked, once each."""
    asked = list(dict.fromkeys(user_ids))
    mine = Membership.select(Membership.chat).where(Membership.user == viewer)
    sharing = {row[0] for row in Membership.select(Membership.user).distinct().where(
        Membership.chat.in_(mine), Membership.user.in_(asked)).tuples()}  # fmt: skip
    if viewer in asked:
        sharing.add(viewer)
    known = {}
    if sharing:
        rows = UserPresence.select(UserPresence.user, UserPresence.state, UserPresence.status_text).where(
            UserPresence.user.in_(list(sharing)))  # fmt: skip
        known = {user: (state, text) for user, state, text in rows.tuples()}
    answer = []
    for user in asked:
        if user not in sharing:
            answer.append({"user_id": user, "state": "unknown", "status_text": ""})
        else:
            state, text = known.get(user, (OFFLINE, ""))
            answer.append({"user_id": user, "state": state, "status_text": text})
    return answer


def sharing_with(user: int) -> set[int]:
    """The users who share a chat with `user`, and `user`: who sees their presence."""
    mine = Membership.select(Membership.chat).where(Membership.user == user)
    others = Membership.select(Membership.user).distinct().where(Membership.chat.in_(mine))
    return {row[0] for row in others.tuples()} | {user}
