"""The ephemeral channel: typing and presence messages, handed to the open streams of every process and host and
never stored in the event log (the broker in fanout.py hands them out; typists.py and presence.py publish).

A message is published where a database connection is open (a handler, or a background job's thread). It reaches
this process's streams at once, and the other processes through one of these:

- `local`: none, for a single process (SQLite with one worker, the default there);
- PostgreSQL `NOTIFY` on its own channel, with the message as payload (under its 8,000-byte limit), read by the
  LISTEN connection each process already holds for events (watchers.py); the default on PostgreSQL;
- Redis `PUBLISH` (`--pubsub redis://host:6379`), for deployments that run Redis already;
- on SQLite with several workers, a table that the processes' data_version watch reads (watchers.py), written in
  batches by a task of the publishing process, whose rows go within a minute: the only way SQLite's processes
  share anything.

Each message carries this process's tag, so that a process skips its own when they come back.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable

from .. import models
from ..models import Deployment, Ephemeral
from ..storage.engines import in_thread, queries_are_local, with_connection

log = logging.getLogger("chat")

DEFAULTS = {"CHAT_PUBSUB": "auto"}
EPHEMERAL_CHANNEL = "chat_ephemeral"  # PostgreSQL NOTIFY channel (one database's); Redis's is the deployment's own
MAX_PAYLOAD_BYTES = 7_900  # NOTIFY refuses 8,000 bytes or more
KEEP_SECONDS = 60  # SQLite: how long a message's row stays for other processes to read
MAX_WAITING = 10_000  # SQLite: messages that may wait for their batch
FRESH_SECONDS = 5  # SQLite: a row older than this is not handed to streams (it waited while nobody listened)
PROCESS = secrets.token_hex(8)

Deliver = Callable[[dict], None]


def encode(message: dict) -> str:
    payload = json.dumps({**message, "p": PROCESS}, separators=(",", ":"), ensure_ascii=False)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"an ephemeral message of {len(payload)} characters is over the channel's limit")
    return payload


class Channel:
    """This process only: the default for a single SQLite process, and what the others add to."""

    name = "local"

    def __init__(self, deliver: Deliver):
        self.deliver = deliver  # the broker's deliver_soon: safe from any thread

    def publish(self, message: dict) -> None:
        self.send(encode(message))  # first: if it fails, no stream here has it either
        self.deliver(message)

    def send(self, payload: str) -> None:
        """Hand the message to the other processes."""

    def received(self, payload: str) -> None:
        """A message from the channel: hand it out, unless this process sent it."""
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("an ephemeral message that is not JSON; dropped")
            return
        if isinstance(message, dict) and message.pop("p", None) != PROCESS:
            self.deliver(message)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin listening, on the broker's event loop."""

    def close(self) -> None:
        pass


class PostgresChannel(Channel):
    """NOTIFY on the publisher's connection (after its transaction commits, if it is in one); the broker's LISTEN
    connection hears it (watchers.PostgresWatch)."""

    name = "postgres"

    def send(self, payload: str) -> None:
        models.db.execute_sql("SELECT pg_notify(%s, %s)", (EPHEMERAL_CHANNEL, payload))


class SqliteChannel(Channel):
    """Rows for the other worker processes, which their data_version watch reads (watchers.SqliteWatch). The rows
    are written by a task of this process's, a batch at a time in the threadpool, never by the request that
    published: a request must not wait for SQLite's write lock for this, nor start over when it cannot take it."""

    name = "sqlite"

    def __init__(self, deliver: Deliver):
        super().__init__(deliver)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: list[tuple[str, float]] = []
        self.writing: asyncio.Task | None = None
        self.lock = threading.Lock()
        self.batches = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def send(self, payload: str) -> None:
        with self.lock:
            if len(self.waiting) >= MAX_WAITING:  # no loop to write them yet, or the disk is stuck: these go stale
                del self.waiting[: MAX_WAITING // 2]
            self.waiting.append((payload, time.time()))
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._write_soon)

    def _write_soon(self) -> None:
        if self.writing is None:
            self.writing = self.loop.create_task(self._write(), name="ephemeral channel (sqlite)")

    async def _write(self) -> None:
        try:
            while True:
                with self.lock:
                    batch, self.waiting = self.waiting, []
                if not batch:
                    return
                try:
                    await in_thread(self._insert, batch)
                except Exception:
                    log.exception("writing %d typing or presence messages for the other workers failed", len(batch))
        finally:
            self.writing = None

    def _insert(self, batch: list[tuple[str, float]]) -> None:
        now = time.time()
        with models.db.atomic():
            Ephemeral.insert_many([{"process": PROCESS, "data": data, "at": at} for data, at in batch]).execute()
            self.batches += 1
            if self.batches % 100 == 1:
                Ephemeral.delete().where(Ephemeral.at < now - KEEP_SECONDS).execute()

    @staticmethod
    def newer(connection, after: int) -> tuple[int, list[str]]:
        """On a watch's own sqlite3 connection: the newest row id read, and the fresh payloads after `after`."""
        rows = connection.execute(
            "SELECT id, data FROM ephemeral WHERE id > ? AND at > ? AND process <> ? ORDER BY id",
            (after, time.time() - FRESH_SECONDS, PROCESS),
        ).fetchall()
        return (rows[-1][0] if rows else after), [data for _, data in rows]


class RedisChannel(Channel):
    """PUBLISH and SUBSCRIBE on one Redis channel, from the broker's event loop. The channel is named for the
    deployment (a random name its database keeps, models.Deployment): Redis's pub/sub ignores the URL's database
    number, and two deployments on one Redis must not hear each other's typing and presence."""

    name = "redis"

    def __init__(self, deliver: Deliver, url: str, channel: str):
        super().__init__(deliver)
        self.url, self.channel = url, channel
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = None
        self.listening: asyncio.Task | None = None
        self.pending: set[asyncio.Task] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        import redis.asyncio  # an optional dependency: the `redis` extra

        self.close()
        self.loop = loop
        self.client = redis.asyncio.from_url(self.url)
        self.listening = loop.create_task(self._listen(), name="ephemeral channel (redis)")

    def send(self, payload: str) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._publish, payload)

    def _publish(self, payload: str) -> None:
        task = self.loop.create_task(self._send(payload))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send(self, payload: str) -> None:
        try:
            await self.client.publish(self.channel, payload)
        except Exception as exc:
            log.warning("publishing to Redis failed (%s); other processes miss one typing or presence change", exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self.received(data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the Redis channel for typing and presence failed (%s); reconnecting in 1 s", exc)
                await asyncio.sleep(1)

    def close(self) -> None:
        if self.listening is not None:
            self.listening.cancel()
            self.listening = None


channel = Channel(lambda message: None)  # fanout.configure sets the real one


def publish(message: dict) -> None:
    """Send a typing or presence message to every process's streams (with a database connection open)."""
    channel.publish(message)


def for_setting(setting: str, deliver: Deliver, workers: int) -> Channel:
    """The channel `--pubsub` names: auto (NOTIFY on PostgreSQL; on SQLite a table with several workers, else this
    process only), local, or redis://…; ValueError for anything else."""
    setting = setting.strip()
    if setting.startswith(("redis://", "rediss://", "unix://")):
        return RedisChannel(deliver, setting, with_connection(Deployment.value_of, "channel") or EPHEMERAL_CHANNEL)
    if setting == "local":
        return Channel(deliver)
    if setting != "auto":
        raise ValueError(f"--pubsub is auto, local or redis://host:port; not {setting!r}")
    if not queries_are_local():
        return PostgresChannel(deliver)
    return SqliteChannel(deliver) if workers > 1 else Channel(deliver)
