"""Bulk work in batches, a transaction each, letting other writers in between; and PostgreSQL's advisory locks."""

from time import perf_counter

from peewee import PostgresqlDatabase

from .engines import SqliteSerializedWrites, db

# Rows a bulk delete removes per transaction: deleting 2,000 messages holds SQLite's write lock for 2-5 ms on two cores.
BATCH_ROWS = 2_000


def in_batches(step) -> None:
    """Run `step` a transaction at a time for as long as it says there is more to do, letting other writers in
    between (on PostgreSQL they never waited: it locks rows, not the database)."""
    while True:
        started = perf_counter()
        with db.atomic():
            more = step()
        if not more:
            return
        if isinstance(db.obj, SqliteSerializedWrites):
            db.obj.let_other_writers_in(perf_counter() - started)


def advisory_lock(key: int) -> None:
    """On PostgreSQL, take a transaction-level advisory lock: transactions that take the same key take turns.
    SQLite's write transactions already run one at a time."""
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))
