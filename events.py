"""Real-time delivery: the event log's fan-out to open streams, resuming from Last-Event-ID, and pruning the log.

Every change is an `Event` row written in the change's own transaction (models.py). Each process has one
`Broker`: a single task reads new rows once, in id order, and hands each one to the streams that may see it.
It learns of new rows three ways, all of which end in the same read by id:

- from this process, as soon as a handler that recorded events is done (`committed`);
- on PostgreSQL, from other processes and hosts, through one LISTEN connection (NOTIFY carries the id);
- on SQLite, from other worker processes, through `PRAGMA data_version` on one connection, polled every
  100 ms while any stream is open: it changes only when another connection commits.

A stream subscribes before it reads the log, so nothing falls between the replay and the live rows; rows
that arrive during the replay wait in the subscriber and are dropped when the replay already sent them.
"""

import asyncio
import collections
import contextlib
import datetime
import functools
import json
import logging
import re
import sqlite3
from dataclasses import dataclass

import anyio
import psycopg2
from peewee import PostgresqlDatabase, SqliteDatabase
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from . import models
from .errors import TooManyRequests
from .models import CHAT_READ, MEMBER_ADDED, MEMBER_LEFT, SESSION_ENDED, Event

log = logging.getLogger("chat")

DEFAULTS = {
    "CHAT_EVENT_RETENTION": "7d",
    "CHAT_EVENT_HEARTBEAT": "15",
    "CHAT_MAX_STREAMS_PER_USER": "20",
}
RETRY_MS = 3_000  # the reconnect delay a stream suggests to EventSource
POLL_SECONDS = 0.1  # SQLite: how often other processes' commits are looked for while streams are open
FETCH_ROWS = 1_000  # rows the broker reads at a time
REPLAY_ROWS = 500  # rows a resuming stream reads at a time
MAX_BACKLOG = 10_000  # rows a stream may have waiting; a stream that falls further behind ends, and resumes
MAX_JSON_EVENTS = 1_000
# Events are for the one client that asked: no cache may keep them (security_headers.py says no-store on every
# response), and no proxy may hold them back.
NOT_STORED = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}


def seconds(text: str) -> int:
    """A duration such as 604800, 90s, 30m, 12h or 7d, in seconds."""
    match = DURATION.fullmatch(text.strip())
    if not match or int(match[1]) < 1:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 30m or 90s")
    return int(match[1]) * UNITS[match[2]]


@dataclass(frozen=True)
class Settings:
    retention: int
    heartbeat: float
    max_streams_per_user: int

    @classmethod
    def from_environment(cls, environ) -> "Settings":
        def get(name: str) -> str:
            return environ.get(name) or DEFAULTS[name]

        heartbeat = float(get("CHAT_EVENT_HEARTBEAT"))
        streams = int(get("CHAT_MAX_STREAMS_PER_USER"))
        if heartbeat <= 0 or streams < 1:
            raise ValueError("CHAT_EVENT_HEARTBEAT and CHAT_MAX_STREAMS_PER_USER must be positive")
        return cls(seconds(get("CHAT_EVENT_RETENTION")), heartbeat, streams)


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

    def as_sse(self) -> ServerSentEvent:
        return ServerSentEvent(data=self.data, event=self.kind, id=str(self.id))


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
        return row.kind not in (CHAT_READ, SESSION_ENDED) and row.chat_id in self.chats

    @classmethod
    def as_of(cls, user: int, session: int, after: int, upto: int, chats_at_upto: set[int]) -> "Audience":
        """The audience as it was right after event `after`, from the chats as event `upto` left them."""
        chats = set(chats_at_upto)
        seen = set()
        for chat, kind in Event.memberships_changed(user, after, upto):
            if chat not in seen:  # the first join or leave after `after` tells whether the user was in then
                seen.add(chat)
                if kind == MEMBER_LEFT:
                    chats.add(chat)
                else:
                    chats.discard(chat)
        return cls(user, session, chats)


class Subscriber:
    """A stream's place in the broker: rows wait in `backlog` until the stream takes them."""

    def __init__(self, user: int, session: int):
        self.user, self.session = user, session
        self.audience: Audience | None = None  # None while the stream replays: rows are kept unfiltered
        self.backlog: collections.deque[Row] = collections.deque()
        self.ready = asyncio.Event()
        self.over = False

    def offer(self, row: Row) -> None:
        if self.over:
            return
        if self.audience is not None:
            verdict = self.audience.admits(row)
            if verdict is Audience.END:
                self.end()
                return
            if not verdict:
                return
        if len(self.backlog) >= MAX_BACKLOG:
            log.info("an event stream of user %d fell %d events behind; ending it", self.user, MAX_BACKLOG)
            self.end()
            return
        self.backlog.append(row)
        self.ready.set()

    def go_live(self, audience: Audience, sent_through: int) -> None:
        """Filter from here on; of the rows that waited, keep those the replay did not send."""
        waiting, self.backlog = self.backlog, collections.deque()
        self.audience = audience
        for row in waiting:
            if row.id > sent_through:
                self.offer(row)

    def end(self) -> None:
        self.over = True
        self.backlog.clear()
        self.ready.set()

    def take(self) -> list[Row]:
        rows = list(self.backlog)
        self.backlog.clear()
        self.ready.clear()
        return rows


def _with_connection(function, *args):
    with models.db.connection_context():
        return function(*args)


async def query(function, *args):
    """Run a model query: on the event loop for SQLite (microseconds), in the threadpool for PostgreSQL."""
    if models.queries_are_local():
        return _with_connection(function, *args)
    return await anyio.to_thread.run_sync(functools.partial(_with_connection, function, *args))


class Broker:
    """This process's subscribers, and the one task that reads new events and hands them out."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.per_user: collections.Counter[int] = collections.Counter()
        self.last: int = 0  # the newest row handed out; valid while anyone is subscribed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._joining: asyncio.Lock | None = None  # the cap check, and `last` when the first joins
        self._watch: _Watch | None = None

    @property
    def subscriber_count(self) -> int:
        return len(self.subscribers)

    def wake(self) -> None:
        """Look for new events now; safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake_on_loop)

    def _wake_on_loop(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def subscribe(self, user: int, session: int) -> Subscriber:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests start one per client)
            self._restart(loop)
        async with self._joining:
            if self.per_user[user] >= self.settings.max_streams_per_user:
                raise TooManyRequests(
                    f"you already have {self.per_user[user]} event streams open here; close one first", retry_after=5
                )
            if not self.subscribers:
                # Nobody was listening, so `last` is stale: start from the newest row, before this subscriber's
                # snapshot, which therefore sees at least as far.
                self.last = await query(Event.head)
            subscriber = Subscriber(user, session)
            self.subscribers.add(subscriber)
            self.per_user[user] += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            self.per_user[subscriber.user] -= 1
            if not self.per_user[subscriber.user]:
                del self.per_user[subscriber.user]

    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watch is not None:
            self._watch.close()
        self.subscribers.clear()
        self.per_user.clear()
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._joining = asyncio.Lock()
        self._watch = _Watch.for_database(self)
        self._task = loop.create_task(self._run(), name="event broker")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._watch.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if not self.subscribers:
                continue
            try:
                if self._watch.changed():
                    await self._hand_out()
                    self._watch.caught_up()
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("reading new events failed; retrying")
                await asyncio.sleep(1)
                self._wakeup.set()

    async def _hand_out(self) -> None:
        while self.subscribers:
            rows = await self._watch.fetch(self.last)
            for values in rows:
                row = Row(*values)
                for subscriber in tuple(self.subscribers):
                    subscriber.offer(row)
                self.last = row.id
            if len(rows) < FETCH_ROWS:
                return


class _Watch:
    """How the broker learns of other processes' commits and reads new rows: the in-process default."""

    poll_seconds: float | None = None

    def __init__(self, broker: Broker):
        self.broker = broker

    @staticmethod
    def for_database(broker: Broker) -> "_Watch":
        database = models.db.obj
        if isinstance(database, SqliteDatabase):
            return _SqliteWatch(broker, database.database)
        if isinstance(database, PostgresqlDatabase):
            return _PostgresWatch(broker, database)
        return _Watch(broker)  # only this process writes: its handlers' wake-ups are enough

    def changed(self) -> bool:
        """Whether new rows may be there: cheap, and allowed to say so when there are none."""
        return True

    def caught_up(self) -> None:
        """Every row that changed() announced has been handed out."""

    async def fetch(self, after: int) -> list[tuple]:
        return await query(Event.newer_than, after, FETCH_ROWS)

    def close(self) -> None:
        pass


class _SqliteWatch(_Watch):
    """One connection of its own: `PRAGMA data_version` on it changes only when another connection commits."""

    poll_seconds = POLL_SECONDS

    def __init__(self, broker: Broker, path: str):
        super().__init__(broker)
        self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA busy_timeout = 1000")
        self.version = self.latest = None

    def changed(self) -> bool:
        self.latest = self.connection.execute("PRAGMA data_version").fetchone()[0]
        return self.latest != self.version

    def caught_up(self) -> None:
        self.version = self.latest

    def close(self) -> None:
        self.connection.close()


class _PostgresWatch(_Watch):
    """One LISTEN connection per process; NOTIFY arrives after the announcing transaction commits."""

    poll_seconds = 5.0  # a safety net only: a lost LISTEN connection is reopened, and rows are read by id

    def __init__(self, broker: Broker, database: PostgresqlDatabase):
        super().__init__(broker)
        self.database = database
        self.connection = None
        self._listen()

    def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection = psycopg2.connect(database=self.database.database, **self.database.connect_params)
            connection.autocommit = True
            connection.cursor().execute(f"LISTEN {models.EVENTS_CHANNEL}")
        except Exception:
            log.exception("cannot LISTEN for events; polling every %s s instead", self.poll_seconds)
            return
        self.connection = connection
        loop.add_reader(connection.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            self.connection.poll()
        except Exception:
            log.warning("the LISTEN connection for events was lost; reopening it")
            self.close()
            self._listen()
            self.broker._wake_on_loop()
            return
        if self.connection.notifies:
            self.connection.notifies.clear()
            self.broker._wake_on_loop()

    def changed(self) -> bool:
        if self.connection is None:
            self._listen()
        return True

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.connection.fileno())
            with contextlib.suppress(Exception):
                self.connection.close()
            self.connection = None


broker = Broker(Settings.from_environment({}))


def configure(environ) -> Broker:
    """A fresh broker with the settings in `environ` (CHAT_EVENT_*); raises ValueError for bad values."""
    global broker
    broker = Broker(Settings.from_environment(environ))
    return broker


def committed() -> None:
    """Called once a handler that recorded events is done, so that its events reach this process's streams now."""
    broker.wake()


@dataclass
class Start:
    """Where a stream or a poll begins: the audience as of the client's last event (replaying to `head` brings it
    up to date), the newest event id, and whether the client's id is unusable and it must refetch instead."""

    audience: Audience
    head: int
    reset: bool


async def begin(user: int, session: int, last_event_id: int | None) -> Start:
    """Read the snapshot a stream starts from; the caller then replays (last_event_id, head] with `replay_rows`."""
    head, chats = await query(Event.snapshot, user)
    if last_event_id is None:
        return Start(Audience(user, session, chats), head, False)
    pruned = await query(Event.pruned_through)
    if last_event_id > head or last_event_id < pruned:
        return Start(Audience(user, session, chats), head, True)
    audience = await query(Audience.as_of, user, session, last_event_id, head, chats)
    return Start(audience, head, False)


async def replay_rows(audience: Audience, after: int, upto: int, limit: int | None = None):
    """The rows (after, upto] the audience may see, oldest first, read a page at a time; None ends it."""
    sent = 0
    while after < upto:
        page = await query(Event.replay, audience.user, after, upto, REPLAY_ROWS)
        for values in page:
            row = Row(*values)
            verdict = audience.admits(row)
            if verdict is Audience.END:
                yield None
                return
            if verdict:
                yield row
                sent += 1
                if limit is not None and sent >= limit:
                    return
        if len(page) < REPLAY_ROWS:
            return
        after = page[-1][0]


def reset_event(head: int) -> Row:
    data = {"reason": "your last event id is older than the events kept here, or unknown", "last_event_id": head}
    return Row(head, "reset", None, None, None, json.dumps(data))


def ready_event(head: int) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps({"last_event_id": head}), event="ready", id=str(head))


def stream_response(subscriber: Subscriber, start: Start, last_event_id: int | None) -> EventSourceResponse:
    async def events():
        try:
            yield ServerSentEvent(retry=RETRY_MS)
            if start.reset:
                yield reset_event(start.head).as_sse()
            elif last_event_id is not None:
                async for row in replay_rows(start.audience, last_event_id, start.head):
                    if row is None:
                        return
                    yield row.as_sse()
            subscriber.go_live(start.audience, start.head)
            yield ready_event(start.head)
            while True:
                await subscriber.ready.wait()
                if subscriber.over:
                    return
                for row in subscriber.take():
                    yield row.as_sse()
        finally:
            broker.unsubscribe(subscriber)

    async def release() -> None:  # also when the client left before the stream's first event
        broker.unsubscribe(subscriber)

    return EventSourceResponse(
        events(),
        background=BackgroundTask(release),
        headers=NOT_STORED,
        ping=broker.settings.heartbeat,
        sep="\n",
    )


async def poll(user: int, session: int, last_event_id: int | None, timeout: int) -> dict:
    """The JSON form: the events waiting after `last_event_id`, or, with a timeout, the first to arrive."""
    subscriber = await broker.subscribe(user, session) if timeout else None
    try:
        start = await begin(user, session, last_event_id)
        if start.reset:
            return {"events": [reset_event(start.head).as_json()], "last_event_id": start.head}
        events, through = [], start.head
        if last_event_id is not None:
            async for row in replay_rows(start.audience, last_event_id, start.head, MAX_JSON_EVENTS):
                if row is None:
                    break
                events.append(row.as_json())
            if len(events) == MAX_JSON_EVENTS:
                through = events[-1]["id"]
        if subscriber is not None and not events:
            subscriber.go_live(start.audience, start.head)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not subscriber.backlog and not subscriber.over:
                        await subscriber.ready.wait()
                        subscriber.ready.clear()
            rows = subscriber.take()
            if len(rows) > MAX_JSON_EVENTS:
                del rows[MAX_JSON_EVENTS:]
                through = rows[-1].id
            else:  # every row the broker handed out so far was offered to this subscriber
                through = max(through, broker.last)
            events = [row.as_json() for row in rows]
        return {"events": events, "last_event_id": through}
    finally:
        if subscriber is not None:
            broker.unsubscribe(subscriber)


async def prune_forever(interval: float | None = None) -> None:
    """Delete events older than the retention window, in the background, every `interval` seconds."""
    retention = broker.settings.retention
    interval = interval or min(max(retention / 10, 1), 600)
    while True:
        cutoff = models.utcnow() - datetime.timedelta(seconds=retention)
        try:
            await anyio.to_thread.run_sync(_with_connection, Event.prune, cutoff)
        except Exception:
            log.exception("pruning old events failed; trying again later")
        await asyncio.sleep(interval)
