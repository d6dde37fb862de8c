"""PostgreSQL transactions in fewer round trips: BEGIN travels with a transaction's first statement, and the
statements queued with `at_commit` travel with its COMMIT.

On this machine a round trip to PostgreSQL on 127.0.0.1 costs the server about 0.1 ms of CPU (send, poll, receive
and their wake-ups), as much as the query itself, so a send that made eight of them (BEGIN, lock, insert, read
marker, event lock, event, notify, COMMIT) spent most of its time on the wire, holding its chat's lock and the
event lock across them (BENCHMARKS.md). A send is now one string of its own (models._send_message); every other
transaction goes through here. psycopg2 sends a string of several statements as one simple query: the
server runs them in order, stops at the first that fails, and returns the last one's rows.

- `begin()` sends nothing; the next statement goes as "BEGIN; <statement>". A transaction that ran no statement
  commits or rolls back without a round trip.
- `at_commit(sql, params)` queues a statement to run right before COMMIT, in the same round trip. Events use it
  (models.Event.record_many): their lock is then held for no round trip at all. A queued statement's result is
  never seen, so only statements whose effect is all that matters are queued. Outside a transaction it runs at
  once. Statements queued inside a savepoint that rolls back are dropped with it.
"""

import re

from peewee import __exception_wrapper__
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

_SAVEPOINT = re.compile(r'(SAVEPOINT|ROLLBACK TO SAVEPOINT|RELEASE SAVEPOINT) ("[^"]+")')


class FewerRoundTrips:
    """A mixin for Peewee's PostgresqlDatabase (and its pooled and green kinds); the state lives in Peewee's
    per-connection state (`_state`), so each thread or request greenlet has its own."""

    def begin(self, isolation_level=None):
        if self.is_closed():
            self.connect()
        if isolation_level is None:
            isolation_level = self._isolation_level
        state = self._state
        state.pending_begin = (
            f"BEGIN TRANSACTION ISOLATION LEVEL {self._adapter.isolation_level_str(isolation_level)}"
            if isolation_level
            else "BEGIN"
        )
        state.at_commit, state.savepoints = [], {}

    def execute_sql(self, sql, params=None):
        state = self._state
        if getattr(state, "savepoints", None) is not None and (savepoint := _SAVEPOINT.match(sql)):
            self._track_savepoint(state, *savepoint.groups())
        begin = getattr(state, "pending_begin", None)
        if begin is None:
            return super().execute_sql(sql, params)
        state.pending_begin = None
        try:
            return super().execute_sql(f"{begin}; {sql}", params)
        except Exception:
            # Refused before the server began anything (a parameter psycopg2 cannot adapt, say): BEGIN is still
            # to be sent, or a caller that goes on in the transaction would run the rest outside it.
            if state.conn is not None and state.conn.info.transaction_status == TRANSACTION_STATUS_IDLE:
                state.pending_begin = begin
            raise

    @staticmethod
    def _track_savepoint(state, command: str, name: str) -> None:
        """Peewee's savepoints are plain statements (its proxy never calls a database's savepoint()); what is
        queued after one is dropped when the transaction rolls back to it."""
        if command == "SAVEPOINT":
            state.savepoints[name] = len(state.at_commit)
        elif command == "ROLLBACK TO SAVEPOINT":
            del state.at_commit[state.savepoints[name] :]

    def at_commit(self, sql: str, params: tuple = ()) -> None:
        """Run this statement right before the transaction commits, in the COMMIT's round trip; at once outside one."""
        if self.in_transaction():
            self._state.at_commit.append((sql, tuple(params)))
        else:
            self.execute_sql(sql, params)

    def commit(self):
        state = self._state
        begin, queued = getattr(state, "pending_begin", None), getattr(state, "at_commit", [])
        state.pending_begin, state.at_commit, state.savepoints = None, [], None
        if not queued:
            if begin is None:  # the transaction ran a statement, so the server has it open
                super().commit()
            return
        statements = [sql for sql, _ in queued]
        if begin is not None:
            statements.insert(0, begin)
        params = tuple(value for _, values in queued for value in values)
        # One query in the count (it is logged like any other), however many statements ride with the COMMIT.
        with __exception_wrapper__:
            self._execute_cursor("; ".join([*statements, "COMMIT"]), params)

    def rollback(self):
        state = self._state
        begin = getattr(state, "pending_begin", None)
        state.pending_begin, state.at_commit, state.savepoints = None, [], None
        if begin is None:
            super().rollback()
