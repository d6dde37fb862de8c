"""Statements: a Peewee query compiled to SQL once per kind of database, then run with fresh parameters, and on
PostgreSQL prepared once per connection."""

import datetime
import itertools
import re
import weakref

from peewee import PostgresqlDatabase

from .engines import db


class Statement:
    """A Peewee query compiled to SQL once per kind of database, then run with fresh parameters.

    On the hot paths building the SQL cost more than running these indexed lookups. The text still
    comes from Peewee, so it stays parametrized and right for SQLite and PostgreSQL alike; the
    parameters are passed in the order the built query binds them.

    With `prepared`, PostgreSQL plans the statement once per connection (PREPARE, then EXECUTE): planning the
    chat list took 1.2 ms of the server's time against 0.5 ms to run it. Only statements whose parameter types
    PostgreSQL can infer from the columns they meet are prepared; a value in a SELECT list has no such column.
    """

    _names = itertools.count(1)

    def __init__(self, build, prepared: bool = False):
        self._build = build
        self._sql: dict[type, tuple[str, int]] = {}
        self._name = f"chat_statement_{next(self._names)}" if prepared else None

    def sql(self, database, params: tuple) -> str:
        """The statement's SQL for this database, checking that `params` fill it."""
        compiled = self._sql.get(type(database))
        if compiled is None:
            built = self._build()
            # A list of queries runs as one string of statements: one round trip (roundtrips.py says why).
            queries = built if isinstance(built, list) else [built]
            parts = [database.get_sql_context().sql(query).query() for query in queries]
            compiled = self._sql[type(database)] = ("; ".join(sql for sql, _ in parts), sum(len(p) for _, p in parts))
        sql, expected = compiled
        if len(params) != expected:
            raise TypeError(f"statement takes {expected} parameters, got {len(params)}")
        return sql

    def execute(self, *params):
        database = db.obj
        sql = self.sql(database, params)
        if self._name is not None and isinstance(database, PostgresqlDatabase):
            return self._execute_prepared(database, sql, params)
        return database.execute_sql(sql, params)

    def _execute_prepared(self, database, sql: str, params: tuple):
        connection = database.connection()
        prepared = _PREPARED.setdefault(connection, set())
        if self._name not in prepared:
            types = [_PARAMETER_TYPES.get(type(value)) for value in params]
            if None in types:  # a type this does not name (a NULL, say): plan it as any other query
                return database.execute_sql(sql, params)
            # The parameters are typed by their Python values, not inferred from the columns they meet: a cursor
            # such as before=9223372036854775807 must stay a bigint beside an integer id column.
            numbers = itertools.count(1)
            numbered = re.sub(r"%s", lambda _: f"${next(numbers)}", sql).replace("%%", "%")
            signature = f"({', '.join(types)})" if types else ""
            # Once per connection, so not one of a request's queries (it does not go through execute_sql).
            connection.cursor().execute(f"PREPARE {self._name}{signature} AS {numbered}")
            prepared.add(self._name)
        placeholders = ", ".join(["%s"] * len(params))
        return database.execute_sql(
            f"EXECUTE {self._name}({placeholders})" if params else f"EXECUTE {self._name}", params
        )

    def rows(self, *params) -> list[tuple]:
        return self.execute(*params).fetchall()

    def first(self, *params) -> tuple | None:
        return self.execute(*params).fetchone()


# PostgreSQL's types for the Python values prepared statements take.
_PARAMETER_TYPES = {int: "bigint", str: "text", bool: "boolean", datetime.datetime: "timestamp"}
# The statements each PostgreSQL connection has prepared, by connection.
_PREPARED: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()
