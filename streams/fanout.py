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

Typing and presence are not in the log: they come on the ephemeral channel (pubsub.py) and go only to the live
streams (not to polls, nor to a stream still replaying) of the people they concern, with no id.
"""

import asyncio
import collections
import contextlib
import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from ..core.errors import TooManyRequests
from ..core.times import seconds, utcnow
from ..models import Event
from ..storage.engines import in_thread, query, with_connection
from . import presence as presences
from . import pubsub
from .audience import Audience, Row
from .typists import typists
from .watchers import FETCH_ROWS, Watch

log = logging.getLogger("chat")

DEFAULTS = {
    "CHAT_EVENT_RETENTION": "7d",
    "CHAT_EVENT_HEARTBEAT": "15",
    "CHAT_MAX_STREAMS_PER_USER": "20",
    **pubsub.DEFAULTS,
    **presences.DEFAULTS,
}
REPLAY_ROWS = 500  # rows a resuming stream reads at a time
# Rows a resume or a poll reads at most (the spec's GET /api/events says so): a stream further behind gets `reset`.
MAX_REPLAY_ROWS = 10_000
MAX_BACKLOG = 10_000  # rows a stream may have waiting; a stream that falls further behind ends, and resumes
MAX_JSON_EVENTS = 1_000


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


# A heartbeat, handed to every live stream at once every `heartbeat` seconds by the broker's one timer (not one
# timer a stream: ten thousand idle streams would each keep a timer and its objects alive between events).
HEARTBEAT = Row(None, "heartbeat", None, None, None, "")


class Subscriber:
    """A stream's place in the broker: rows wait in `backlog` until the stream takes them."""

    __slots__ = ("audience", "backlog", "ephemeral", "over", "ready", "session", "user")

    def __init__(self, user: int, session: int, ephemeral: bool = False):
        self.user, self.session, self.ephemeral = user, session, ephemeral  # ephemeral: a stream, not a poll
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

    def push(self, row: Row) -> None:
        """An ephemeral row (no id) for this live stream."""
        if not self.over and len(self.backlog) < MAX_BACKLOG:
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


class Broker:
    """This process's subscribers, and the one task that reads new events and hands them out."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.by_user: dict[int, set[Subscriber]] = {}  # the same subscribers, by user
        self.per_user: collections.Counter[int] = collections.Counter()
        self.last: int = 0  # the newest row handed out; valid while anyone is subscribed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._beating: asyncio.Task | None = None
        self._joining: asyncio.Lock | None = None  # the cap check, and `last` when the first joins
        self._watch: Watch | None = None
        self.channel: pubsub.Channel = pubsub.Channel(self.deliver_soon)
        self.presence = presences.Presence(presences.Settings.from_environment({}))
        self._presence_queue: collections.deque[dict] = collections.deque()
        self._presence_task: asyncio.Task | None = None

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

    def deliver_soon(self, message: dict) -> None:
        """Hand out a typing or presence message to this process's streams; safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: dict) -> None:
        try:
            kind = message["k"]
            if kind == "typing":
                chat, user = int(message["chat"]), int(message["user"])
                row = Row(None, "typing", chat, user, None, str(message["data"]))
                typists.heard(user, chat, bool(message.get("active")))
                for subscriber in self.subscribers:
                    audience = subscriber.audience
                    if (
                        subscriber.ephemeral
                        and audience is not None
                        and subscriber.user != user
                        and chat in audience.chats
                    ):
                        subscriber.push(row)
            elif kind == "presence":
                self._presence_queue.append(message)
                if self._presence_task is None:
                    self._presence_task = self._loop.create_task(self._deliver_presence(), name="presence delivery")
        except (KeyError, TypeError, ValueError):
            log.warning("an ephemeral message of an unknown form; dropped")

    async def _deliver_presence(self) -> None:
        """Presence changes in the order they came: each to the live streams here of the people who share a chat with
        its user, and to that user's own. One query finds those people; their streams are looked up by user, so a
        change costs what it delivers, not a pass over every stream of the process."""
        try:
            while self._presence_queue:
                message = self._presence_queue.popleft()
                try:
                    user, data = int(message["user"]), str(message["data"])
                except (KeyError, TypeError, ValueError):
                    log.warning("a presence message of an unknown form; dropped")
                    continue
                if not self.by_user:
                    continue
                try:
                    sharing = await query(presences.sharing_with, user)
                except Exception:
                    log.exception("reading who shares a chat with user %d for a presence change failed", user)
                    continue
                row = Row(None, "presence", None, user, None, data)
                here = sharing.intersection(self.by_user) if len(sharing) > len(self.by_user) else sharing
                for other in here:
                    for subscriber in self.by_user.get(other, ()):
                        if subscriber.ephemeral and subscriber.audience is not None:
                            subscriber.push(row)
        finally:
            self._presence_task = None

    async def subscribe(self, user: int, session: int, stream: bool = False) -> Subscriber:
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
            subscriber = Subscriber(user, session, ephemeral=stream)
            self.subscribers.add(subscriber)
            self.by_user.setdefault(user, set()).add(subscriber)
            self.per_user[user] += 1
        if stream:
            self.presence.start(loop)
            self.presence.opened(user, session)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            theirs = self.by_user.get(subscriber.user)
            if theirs is not None:
                theirs.discard(subscriber)
                if not theirs:
                    del self.by_user[subscriber.user]
            self.per_user[subscriber.user] -= 1
            if not self.per_user[subscriber.user]:
                del self.per_user[subscriber.user]
            if subscriber.ephemeral:
                self.presence.closed(subscriber.user, subscriber.session)

    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watch is not None:
            self._watch.close()
        self.subscribers.clear()
        self.by_user.clear()
        self.per_user.clear()
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._joining = asyncio.Lock()
        self._watch = Watch.for_database(self)
        self._task = loop.create_task(self._run(), name="event broker")
        self._beating = loop.create_task(self._beat(), name="event stream heartbeats")
        self._presence_queue.clear()
        self._presence_task = None
        self.channel.start(loop)

    def close(self) -> None:
        """Stop this broker's tasks (a new one is configured): its streams were those of an app now gone."""
        loop = self._loop
        for task in (self._task, self._beating, self._presence_task):
            if task is not None and loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.close()
        self.channel.close()
        self.presence.close()

    async def leave(self) -> None:
        """This process stops: its streams stop counting for presence at once."""
        self.presence.close()  # no flush or sweep of its own after this
        try:
            with contextlib.suppress(Exception):
                await in_thread(self.presence.leave)
        finally:
            self.close()

    def start(self) -> None:
        """Begin on the running loop before any stream opens (at startup), so that ephemeral messages and the
        presence sweep run from the start."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._restart(loop)
        self.presence.start(loop)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            for subscriber in tuple(self.subscribers):
                if subscriber.ephemeral and subscriber.audience is not None:
                    subscriber.push(HEARTBEAT)

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
                    for payload in self._watch.ephemeral():
                        self.channel.received(payload)
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


broker = Broker(Settings.from_environment({}))


def configure(environ) -> Broker:
    """A fresh broker with the settings in `environ` (CHAT_EVENT_*, CHAT_PUBSUB, CHAT_PRESENCE_*), with its
    ephemeral channel for the database it is bound to; raises ValueError for bad values."""
    global broker
    settings = Settings.from_environment(environ)
    presence_settings = presences.Settings.from_environment(environ)
    workers = int(environ.get("CHAT_WORKERS") or 1)
    old = broker
    broker = Broker(settings)
    broker.channel = pubsub.channel = pubsub.for_setting(
        environ.get("CHAT_PUBSUB") or DEFAULTS["CHAT_PUBSUB"], broker.deliver_soon, workers
    )
    broker.presence = presences.Presence(presence_settings)
    old.close()
    return broker


def committed() -> None:
    """Called once a handler that recorded events is done, so that its events reach this process's streams now."""
    broker.wake()


@dataclass
class Start:
    """Where a stream or a poll begins: the audience as of the client's last event (replaying to `head` brings it
    up to date), the newest event id, whether the client's id is unusable and it must refetch instead, and where
    the replay starts in each chat it reads (Audience.resuming), and the audience as of `head`, for a stream that
    skips the replay (cut short: Replay)."""

    audience: Audience
    head: int
    reset: bool
    starts: dict[int, int] = field(default_factory=dict)
    at_head: Audience | None = None


def _begin(user: int, session: int, last_event_id: int | None) -> Start:
    head, chats = Event.snapshot(user)
    if last_event_id is None:
        return Start(Audience(user, session, chats), head, False)
    pruned = Event.pruned_through()
    if last_event_id > head or last_event_id < pruned:
        return Start(Audience(user, session, chats), head, True)
    audience, starts = Audience.resuming(user, session, last_event_id, head, chats)
    return Start(audience, head, False, starts, Audience(user, session, chats))


async def begin(user: int, session: int, last_event_id: int | None) -> Start:
    """Read, off the event loop, the snapshot a stream starts from; the caller then replays (last_event_id, head]
    with a Replay."""
    return await in_thread(_begin, user, session, last_event_id)


class Replay:
    """The rows (after, head] a resuming audience may see, oldest first, read a page at a time off the event loop.

    Each page is an ordered index scan per chat (Event.replay), so it costs the same however long the log before
    the resume point is. At most `budget` rows are read: a client further behind is `cut_short` (a stream then
    gets `reset`; a poll answers what it found, with the id it read up to). `ended` when the session ended.
    """

    def __init__(self, start: Start, after: int, budget: int | None = None):
        self.start, self.through, self.budget = start, after, MAX_REPLAY_ROWS if budget is None else budget
        self.ended = self.cut_short = False

    async def rows(self, limit: int | None = None):
        start, audience, read, sent = self.start, self.start.audience, 0, 0
        while self.through < start.head:
            if read >= self.budget:
                self.cut_short = True
                return
            starts = {chat: max(after, self.through) for chat, after in start.starts.items()}
            page = await in_thread(Event.replay, starts, start.head, REPLAY_ROWS, audience.user, self.through)
            read += len(page)
            for values in page:
                row = Row(*values)
                verdict = audience.admits(row)
                if verdict is Audience.END:
                    self.ended = True
                    return
                self.through = row.id
                if verdict:
                    yield row
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
            if len(page) < REPLAY_ROWS:
                self.through = start.head
                return


def reset_event(head: int, too_far: bool = False) -> Row:
    reason = (
        f"you are more than {MAX_REPLAY_ROWS} events behind; fetch your chats again"
        if too_far
        else "your last event id is older than the events kept here, or unknown"
    )
    return Row(head, "reset", None, None, None, json.dumps({"reason": reason, "last_event_id": head}))


async def poll(
    user: int, session: int, last_event_id: int | None, timeout: int, disconnected: Callable[[], Awaitable] | None
) -> dict:
    """The JSON form: the events waiting after `last_event_id`, or, with a timeout, the first to arrive.

    A poll holds one of the user's stream slots while it runs, and gives it back the moment `disconnected`
    returns (the client went away), not when its timeout passes.
    """
    subscriber = await broker.subscribe(user, session)
    watching = None
    if disconnected is not None:
        watching = asyncio.get_running_loop().create_task(disconnected(), name="poll disconnect watch")
        watching.add_done_callback(lambda _: (broker.unsubscribe(subscriber), subscriber.end()))
    try:
        start = await begin(user, session, last_event_id)
        if start.reset:
            return {"events": [reset_event(start.head).as_json()], "last_event_id": start.head}
        events, through, caught_up = [], start.head, True
        if last_event_id is not None:
            replay = Replay(start, last_event_id)
            events = [row.as_json() async for row in replay.rows(MAX_JSON_EVENTS)]
            if len(events) == MAX_JSON_EVENTS or replay.cut_short:
                through, caught_up = replay.through, False
        if timeout and caught_up and not events:
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
        if watching is not None:
            watching.cancel()
        broker.unsubscribe(subscriber)


async def prune_forever(interval: float | None = None) -> None:
    """Delete events older than the retention window, in the background, every `interval` seconds."""
    retention = broker.settings.retention
    interval = interval or min(max(retention / 10, 1), 600)
    while True:
        cutoff = utcnow() - datetime.timedelta(seconds=retention)
        try:
            await anyio.to_thread.run_sync(with_connection, Event.prune, cutoff)
        except Exception:
            log.exception("pruning old events failed; trying again later")
        await asyncio.sleep(interval)
