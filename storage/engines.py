"""The engines and their quirks: SQLite with one writer at a time, PostgreSQL on the event loop, the proxy the
models are bound to, and `init_db`, which binds it to a URL's database after bringing the schema up to date."""

import contextlib
import datetime
import functools
import sqlite3
import threading
from time import sleep
from urllib.parse import urlparse

import anyio
from peewee import DatabaseProxy, OperationalError, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledSqliteDatabase

from . import green, migrations
from .green import GreenPostgresqlDatabase
from .roundtrips import FewerRoundTrips

# What every model is bound to (models.py's BaseModel); init_db points it at a database.
db = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
}


class WouldWait(Exception):
    """A write transaction could not start at once: another thread or process holds SQLite's write lock."""


class SqliteSerializedWrites(PooledSqliteDatabase):
    """Pooled SQLite whose write transactions queue on one in-process lock.

    Transactions begin IMMEDIATE, so a transaction that reads and then writes never fails with
    "database is locked" when another writer commits in between; the lock makes this process's
    writers wait their turn in Python instead of sleeping in SQLite's busy handler, which keeps
    the tail short. Other processes still wait through busy_timeout. The lock is taken in begin()
    and given back at commit or rollback, because `db.atomic()` on the proxy never calls a
    subclass's atomic(). On the event loop, inside never_waiting(), a transaction that would
    wait for either lock raises WouldWait instead (edge/offload.py).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, lock_type="IMMEDIATE", **kwargs)
        self._write_lock = threading.Lock()
        self._holder = threading.local()
        self._busy_timeout = int(dict(self._pragmas).get("busy_timeout", 0))

    def begin(self, *args, **kwargs):
        if getattr(self._holder, "never_wait", False):
            self._begin_at_once(*args, **kwargs)
            return
        self._write_lock.acquire()
        self._holder.locked = True
        try:
            super().begin(*args, **kwargs)
        except BaseException:
            self._release()
            raise

    def _begin_at_once(self, *args, **kwargs) -> None:
        if not self._write_lock.acquire(blocking=False):
            raise WouldWait("another thread holds the write lock")
        self._holder.locked = True
        cursor = self.cursor()
        try:
            # Not through execute_sql, like BEGIN itself: these are not queries a request makes.
            cursor.execute("PRAGMA busy_timeout = 0")
            try:
                super().begin(*args, **kwargs)
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {self._busy_timeout}")
        except OperationalError as exc:
            self._release()
            if "locked" in str(exc):
                raise WouldWait("another process holds the write lock") from exc
            raise
        except BaseException:
            self._release()
            raise

    @contextlib.contextmanager
    def never_waiting(self):
        """In this block, on this thread, a write transaction that cannot start at once raises WouldWait instead."""
        self._holder.never_wait = True
        try:
            yield
        finally:
            self._holder.never_wait = False

    def commit(self):
        super().commit()
        self._release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self._holder, "locked", False):
            self._holder.locked = False
            self._write_lock.release()

    def writing_elsewhere(self) -> bool:
        """Whether another thread is in a write transaction now, say deleting a chat with a long history."""
        return self._write_lock.locked() and not getattr(self._holder, "locked", False)

    def let_other_writers_in(self, batch_seconds: float) -> None:
        """Pause between two batches of a bulk delete for as long as the last one held the write lock.

        Without a pause the deleting thread takes the lock straight back: a thread woken by its release still
        needs the GIL, and another process's writer only retries on its busy handler's schedule (1, 2, 5 … 100 ms).
        """
        sleep(max(batch_seconds, 0.001))


class PostgresqlOnTheLoop(FewerRoundTrips, GreenPostgresqlDatabase):
    """Pooled PostgreSQL whose requests wait for it on the event loop (green.py), in transactions that take fewer
    round trips (roundtrips.py)."""


def connect(url: str):
    """Build the database for a URL: sqlite:///path or postgresql://user@host/name."""
    scheme = urlparse(url).scheme
    kwargs = parse_db_url(url)
    if scheme in ("sqlite", "sqlite+pool"):
        # Times are stored as text in the form Peewee reads back; Python 3.12 deprecates sqlite3's implicit adapter.
        sqlite3.register_adapter(datetime.datetime, lambda value: value.isoformat(" "))
        kwargs.setdefault("pragmas", SQLITE_PRAGMAS)
        kwargs.setdefault("check_same_thread", False)
        return SqliteSerializedWrites(max_connections=64, stale_timeout=300, **kwargs)
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        green.install()  # requests query on the event loop (green.py); threads still block as before
        return PostgresqlOnTheLoop(max_connections=64, stale_timeout=300, **kwargs)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def init_db(url: str, migrate: bool = True):
    """Bind the models to the database at `url`, first bringing its schema up to date (migrations.py), or with
    migrate=False refusing one that is behind (migrations.SchemaBehind)."""
    database = connect(url)
    db.initialize(database)
    if migrate:
        migrations.upgrade(database)
    else:
        migrations.require_latest(database)
    return database


def queries_are_local() -> bool:
    """Whether the database lives in this process (SQLite), so a query costs microseconds, not a round trip."""
    return isinstance(db.obj, SqliteDatabase)


def with_connection(function, *args):
    """Call `function` with a pooled connection of this thread's, given back after."""
    with db.connection_context():
        return function(*args)


async def in_thread(function, *args):
    """Run a model query in the threadpool, off the event loop, whatever the database: for work that grows with
    data (an event replay), which must never hold up the loop."""
    return await anyio.to_thread.run_sync(functools.partial(with_connection, function, *args))


async def query(function, *args):
    """Run a model query: on the event loop for SQLite (microseconds), in the threadpool for PostgreSQL."""
    if queries_are_local():
        return with_connection(function, *args)
    return await anyio.to_thread.run_sync(functools.partial(with_connection, function, *args))
