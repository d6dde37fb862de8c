"""How a process's broker learns of commits made elsewhere, and reads the new rows: on SQLite through `PRAGMA
data_version`, on PostgreSQL through one LISTEN connection, and otherwise from this process's own wake-ups alone."""

import asyncio
import contextlib
import logging
import sqlite3

import psycopg2
from peewee import PostgresqlDatabase, SqliteDatabase

from .. import models
from ..models import Event
from ..storage.engines import query
from ..storage.queries import EVENTS_CHANNEL
from .pubsub import EPHEMERAL_CHANNEL, SqliteChannel

log = logging.getLogger("chat")

POLL_SECONDS = 0.1  # SQLite: how often other processes' commits are looked for while streams are open
FETCH_ROWS = 1_000  # rows the broker reads at a time


class Watch:
    """How the broker learns of other processes' commits and reads new rows: the in-process default."""

    poll_seconds: float | None = None

    def __init__(self, broker):
        self.broker = broker  # the fan-out's Broker (streams/fanout.py), woken through its _wake_on_loop

    @staticmethod
    def for_database(broker) -> "Watch":
        database = models.db.obj
        if isinstance(database, SqliteDatabase):
            return SqliteWatch(broker, database.database)
        if isinstance(database, PostgresqlDatabase):
            return PostgresWatch(broker, database)
        return Watch(broker)  # only this process writes: its handlers' wake-ups are enough

    def changed(self) -> bool:
        """Whether new rows may be there: cheap, and allowed to say so when there are none."""
        return True

    def caught_up(self) -> None:
        """Every row that changed() announced has been handed out."""

    def ephemeral(self) -> list[str]:
        """The typing and presence messages other processes left in the database since the last call (SQLite with
        several workers: pubsub.SqliteChannel); PostgreSQL's come through the LISTEN connection instead."""
        return []

    async def fetch(self, after: int) -> list[tuple]:
        return await query(Event.newer_than, after, FETCH_ROWS)

    def close(self) -> None:
        pass


class SqliteWatch(Watch):
    """One connection of its own: `PRAGMA data_version` on it changes only when another connection commits."""

    poll_seconds = POLL_SECONDS

    def __init__(self, broker, path: str):
        super().__init__(broker)
        self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA busy_timeout = 1000")
        self.version = self.latest = None
        self.ephemeral_after = 0  # rows older than a few seconds are not handed out (pubsub.FRESH_SECONDS)

    def changed(self) -> bool:
        self.latest = self.connection.execute("PRAGMA data_version").fetchone()[0]
        return self.latest != self.version

    def caught_up(self) -> None:
        self.version = self.latest

    def ephemeral(self) -> list[str]:
        if not isinstance(self.broker.channel, SqliteChannel):
            return []
        self.ephemeral_after, payloads = SqliteChannel.newer(self.connection, self.ephemeral_after)
        return payloads

    def close(self) -> None:
        self.connection.close()


class PostgresWatch(Watch):
    """One LISTEN connection per process; NOTIFY arrives after the announcing transaction commits."""

    poll_seconds = 5.0  # a safety net only: a lost LISTEN connection is reopened, and rows are read by id

    def __init__(self, broker, database: PostgresqlDatabase):
        super().__init__(broker)
        self.database = database
        self.connection = None
        self._listen()

    def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            connection = psycopg2.connect(database=self.database.database, **self.database.connect_params)
            connection.autocommit = True
            connection.cursor().execute(f"LISTEN {EVENTS_CHANNEL}; LISTEN {EPHEMERAL_CHANNEL}")
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
            notifies = list(self.connection.notifies)
            self.connection.notifies.clear()
            if any(notify.channel == EVENTS_CHANNEL for notify in notifies):
                self.broker._wake_on_loop()
            for notify in notifies:
                if notify.channel == EPHEMERAL_CHANNEL:
                    self.broker.channel.received(notify.payload)

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
