"""Peewee models for users, sessions, chats, memberships, messages, and the event log that streams read."""

import contextlib
import datetime
import hashlib
import itertools
import json
import logging
import re
import secrets
import sqlite3
import threading
import weakref
from time import perf_counter, sleep
from urllib.parse import urlparse

from peewee import (
    JOIN,
    SQL,
    AutoField,
    BigAutoField,
    BigIntegerField,
    Case,
    CharField,
    DatabaseProxy,
    DateTimeField,
    Expression,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    OperationalError,
    PostgresqlDatabase,
    Select,
    SqliteDatabase,
    TextField,
    Tuple,
    Value,
    fn,
)
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledSqliteDatabase
from playhouse.sqlite_ext import FTS5Model, RowIDField, SearchField

from . import green, migrations, names, search
from .green import GreenPostgresqlDatabase
from .passwords import DEFAULT_CONCURRENCY, Passwords
from .roundtrips import FewerRoundTrips

log = logging.getLogger("chat")
db = DatabaseProxy()
MAX_ID = 2**63 - 1

passwords = Passwords()

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
    wait for either lock raises WouldWait instead (offload.py).
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


def init_db(url: str, migrate: bool = True, password_profile: str = "secure", hash_concurrency: int | None = None):
    """Bind the models to the database at `url`, first bringing its schema up to date (migrations.py), or with
    migrate=False refusing one that is behind (migrations.SchemaBehind)."""
    global passwords
    passwords = Passwords(password_profile, hash_concurrency or DEFAULT_CONCURRENCY)
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


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: datetime.datetime | str | None) -> str | None:
    """A stored UTC time as RFC 3339: SQLite hands back Peewee's text form, PostgreSQL a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace(" ", "T", 1) + "Z"
    return value.isoformat() + "Z"


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


# Session.lookup's parameters: a token's hash, the oldest created_at and the oldest last request a live session has.
SessionLookup = tuple[str, datetime.datetime, datetime.datetime]
# A live session found by a hot read: its id and its last request (a datetime, or its text form).
LiveSession = tuple[int, datetime.datetime | str]


class UTCDateTimeField(DateTimeField):
    """Naive UTC datetimes; SQLite's text form is read with fromisoformat, far cheaper than strptime."""

    def python_value(self, value):
        if isinstance(value, str):
            return datetime.datetime.fromisoformat(value)
        return value


class NeverReusedIdField(AutoField):
    """An id that is never handed out twice, even after the newest row is deleted.

    PostgreSQL sequences already behave so; SQLite needs AUTOINCREMENT.
    """

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database.obj, SqliteDatabase):
            return NodeList((node, SQL("AUTOINCREMENT")))
        return node


class NeverReusedBigIdField(NeverReusedIdField):
    field_type = BigAutoField.field_type


class BaseModel(Model):
    class Meta:
        database = db


class User(BaseModel):
    id = NeverReusedIdField()
    name = CharField(max_length=64, unique=True)
    # What makes look-alike names one name (names.py); a key is up to KEY_EXPANSION times its name's length.
    # NULL only for an account from before keys whose name looks like an older account's (migrations.py).
    name_key = CharField(max_length=names.KEY_LENGTH, null=True, unique=True)
    email = CharField(max_length=254)
    password_hash = CharField(max_length=255)

    @classmethod
    def by_name(cls, name: str):
        """The user with exactly this name, else the one whose name looks like it."""
        user = cls.get_or_none(cls.name == name)
        if user is None and (key := names.lookup_key(name)) is not None:
            user = cls.get_or_none(cls.name_key == key)
        return user

    @classmethod
    def name_taken(cls, name: str, other_than: int | None = None) -> bool:
        """Whether a user (other than the one with id other_than) has this name or one that looks like it."""
        query = cls.select().where((cls.name == names.display_name(name)) | (cls.name_key == names.name_key(name)))
        if other_than is not None:
            query = query.where(cls.id != other_than)
        return query.exists()

    @classmethod
    def register(cls, name: str, password: str, email: str) -> "User":
        password_hash = passwords.hash(password)
        with db.atomic():
            return cls.create(
                name=names.display_name(name), name_key=names.name_key(name), email=email, password_hash=password_hash
            )

    @classmethod
    def authenticate(cls, name: str, password: str):
        """The user with this name and password, else None; unknown names cost a hash too."""
        user = cls.by_name(name)
        return user if passwords.verify(user.password_hash if user else None, password) else None

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "email": self.email}

    def update_profile(self, name: str | None, email: str | None) -> None:
        changes = {} if name is None else {User.name: names.display_name(name), User.name_key: names.name_key(name)}
        if email is not None:
            changes[User.email] = email
        if changes:
            with db.atomic():
                User.update(changes).where(User.id == self.id).execute()

    def verify_password(self, password: str) -> bool:
        return passwords.verify(self.password_hash, password)

    def change_password(self, password: str, keep_session: int) -> None:
        """Store a new password and end every other session of the user, together: a thief holding one is out."""
        password_hash = passwords.hash(password)
        with db.atomic():
            User.update(password_hash=password_hash).where(User.id == self.id).execute()
            Session.end_all(self.id, keep=keep_session)

    def delete_account(self) -> None:
        """Drop the user, their sessions and memberships, and every chat they were the last member of.

        A batch per transaction, however many chats: the sessions first (the user is logged out), then the
        memberships (the chats left empty are gone at once, their messages purged after), then the user.
        Every state in between is one the user could have reached by leaving chats one by one, and deleting
        the account again finishes the job.
        """
        sessions = Session.select(Session.id).where(Session.user == self.id).limit(BATCH_ROWS)

        def end_sessions() -> bool:
            ended = Session.delete().where(Session.id.in_(sessions)).execute()
            Event.record(SESSION_ENDED, None, {}, user_id=self.id)  # every stream of the user's ends
            return ended == BATCH_ROWS

        in_batches(end_sessions)
        while True:
            in_batches(lambda: Membership.leave_some(self.id) == BATCH_ROWS)
            Chat.purge_deleted()
            with db.atomic():
                # Someone may have added the user to a chat meanwhile; then go round again. On PostgreSQL the lock
                # waits for a chat being created or joined right now (the new membership's foreign key holds the
                # user row), so the check sees its membership; a later one fails its foreign key instead.
                if isinstance(db.obj, PostgresqlDatabase):
                    User.select(User.id).where(User.id == self.id).for_update().execute()
                mine = Membership.select(Membership.id).where(Membership.user == self.id)
                if User.delete().where(User.id == self.id, ~fn.EXISTS(mine)).execute():
                    return


class Session(BaseModel):
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField(default=utcnow)
    # When the session last made a request, to a minute (SEEN_EVERY); null in rows older than the column.
    last_seen_at = UTCDateTimeField(null=True, default=utcnow)

    # The idle clock moves at most once a minute per session. Writing it on every request would make every
    # read a write (on SQLite, a wait for its one write lock), and an idle timeout of days needs no finer clock.
    SEEN_EVERY = datetime.timedelta(seconds=60)

    @staticmethod
    def hash_token(token: str) -> str:
        # The token holds 256 random bits, so a fast hash is enough: nothing to brute-force.
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def start(cls, user_id: int) -> str:
        token, now = secrets.token_urlsafe(32), utcnow()
        with db.atomic():
            cls.create(user=user_id, token_hash=cls.hash_token(token), created_at=now, last_seen_at=now)
        return token

    @classmethod
    def live(cls, user_id: int, token: str, idle: datetime.timedelta, lifetime: datetime.timedelta) -> int | None:
        """The session's id when this token is a live session of that user, else None.

        A session is live until it has been `idle` without a request, or `lifetime` after login; one query
        tells, and a second, at most once a minute (SEEN_EVERY), moves its idle clock forward.
        """
        row = _SESSION_USER.first(*cls.lookup(token, idle, lifetime))
        if row is None or row[0] != user_id:
            return None
        cls.confirm(row[1], row[2])
        return row[1]

    @classmethod
    def lookup(cls, token: str, idle: datetime.timedelta, lifetime: datetime.timedelta) -> "SessionLookup":
        """What finds this token's session if it is live: its hash, and the oldest created_at and last request a
        live session has. The hot reads take it too, and check the session in their own query."""
        now = utcnow()
        return cls.hash_token(token), now - lifetime, now - idle

    @classmethod
    def confirm(cls, session_id: int, seen: datetime.datetime | str) -> None:
        """A request of this live session arrived: move its idle clock if it is a minute behind (SEEN_EVERY)."""
        now = utcnow()
        if cls.last_seen_at.python_value(seen) < now - cls.SEEN_EVERY:
            cls._seen(session_id, now)

    @classmethod
    def _seen(cls, session_id: int, now: datetime.datetime) -> None:
        """Move the session's idle clock to `now`, best effort.

        On SQLite this runs on the event loop, inside never_waiting(): when another writer holds the lock, the
        clock stays put and a request in the next minute tries again; a minute matters nothing to a timeout of
        days. The condition keeps two workers that both saw a stale clock from writing it twice.
        """
        stale = cls.last_seen_at.is_null() | (cls.last_seen_at < now - cls.SEEN_EVERY)
        with contextlib.suppress(WouldWait), db.atomic():
            cls.update(last_seen_at=now).where(cls.id == session_id, stale).execute()

    @classmethod
    def revoke_all(cls, user_id: int) -> None:
        """End every session of the user, on every device; all their event streams end with them."""
        with db.atomic():
            cls.end_all(user_id)

    @classmethod
    def end_all(cls, user_id: int, keep: int | None = None) -> None:
        """End every session of the user but `keep`, and their event streams; call it inside a transaction."""
        if keep is None:
            cls.delete().where(cls.user == user_id).execute()
            Event.record(SESSION_ENDED, None, {}, user_id=user_id)  # every stream of the user's ends
            return
        ended = cls.delete().where(cls.user == user_id, cls.id != keep).returning(cls.id).tuples().execute()
        Event.record_many(
            [
                {"kind": SESSION_ENDED, "chat_id": None, "user_id": user_id, "session_id": session, "data": {}}
                for (session,) in ended
            ]
        )

    @classmethod
    def revoke(cls, token: str) -> None:
        """End the session; its open event streams end with it."""
        with db.atomic():
            session = cls.get_or_none(cls.token_hash == cls.hash_token(token))
            if session is not None:
                session.delete_instance()
                Event.record(SESSION_ENDED, None, {}, user_id=session.user_id, session_id=session.id)


class Chat(BaseModel):
    id = NeverReusedIdField()
    title = CharField(max_length=200)
    created_at = UTCDateTimeField(default=utcnow)

    @classmethod
    def create_with_member(cls, title: str, user_id: int) -> "Chat":
        with db.atomic():
            chat = cls.create(title=title)
            Membership.create(chat=chat.id, user=user_id)
            name = User.select(User.name).where(User.id == user_id).scalar()
            Event.record(MEMBER_ADDED, chat.id, {"chat_id": chat.id, "user": {"id": user_id, "name": name}}, user_id)
        return chat

    @classmethod
    def rename(cls, chat_id: int, title: str) -> None:
        with db.atomic():
            cls.update(title=title).where(cls.id == chat_id).execute()
            Event.record(CHAT_RENAMED, chat_id, {"chat_id": chat_id, "title": title})

    @classmethod
    def purge_deleted(cls) -> None:
        """Delete the messages, then the rows, of the chats whose last member left (DeletedChat), in batches.

        A purge cut short (a crash, a restart) leaves its chats listed, and the next purge finishes them.
        """
        in_batches(_purge_step)

    @classmethod
    def listing_for(
        cls, user_id: int, session: "SessionLookup", limit: int = 100, before: str | None = None
    ) -> tuple[list[dict], str | None, "LiveSession | None"]:
        """A page of the user's chats with their newest message, newest activity first, in one query that also
        checks the user's session (Session.lookup).

        The page starts right after the chat that `before` names and ends with the cursor of the page after
        it, or None when no chat is left. The session's (id, last seen) comes with it, or None when the query
        found no row: either the session is not live, or the page is empty (Session.live tells which).
        """
        start = LISTING_START if before is None else listing_position(before)
        rows = _CHAT_LISTING.rows(*session, user_id, user_id, *start, limit + 1)
        live = (rows[0][-2], rows[0][-1]) if rows else None
        more = len(rows) > limit
        del rows[limit:]
        chats = [
            {
                "id": chat_id,
                "title": title,
                "last_message": content,
                "last_message_time": rfc3339(time),
                "sender_id": sender_id,
                "last_read_id": last_read_id,
                "unread_count": unread,
            }
            for chat_id, title, content, time, sender_id, last_read_id, unread, _activity, _session, _seen in rows
        ]
        return chats, (listing_cursor(rows[-1][7], rows[-1][0]) if more else None), live


class Membership(BaseModel):
    chat = ForeignKeyField(Chat, backref="memberships", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    joined_at = UTCDateTimeField(default=utcnow)
    # The newest message the member marked read or sent; it only moves forward.
    last_read_id = IntegerField(null=True)

    class Meta:
        indexes = ((("user", "chat"), True),)

    @classmethod
    def exists(cls, chat_id: int, user_id: int) -> bool:
        return _MEMBERSHIP.first(user_id, chat_id) is not None

    @classmethod
    def share_a_chat(cls, user_id: int, other_id: int) -> bool:
        """Whether the two users are members of one chat together."""
        theirs = cls.alias()
        together = theirs.select(theirs.id).where(theirs.chat == cls.chat, theirs.user == other_id)
        return cls.select(cls.id).where(cls.user == user_id, fn.EXISTS(together)).exists()

    @classmethod
    def add(cls, chat_id: int, user_id: int, name: str, adder_id: int) -> bool:
        """Add a member while the adder still is one and the chat is not being deleted, checked inside the write;
        whether it was added. On PostgreSQL the chat row is locked FOR SHARE, so a leave in progress finishes first."""
        with db.atomic():
            _lock_chats(Chat.id == chat_id, "FOR SHARE")
            adder = cls.select(cls.id).where(cls.chat == chat_id, cls.user == adder_id)
            deleted = DeletedChat.select(DeletedChat.chat).where(DeletedChat.chat == chat_id)
            source = Chat.select(Chat.id, Value(user_id), Value(utcnow())).where(
                Chat.id == chat_id, fn.EXISTS(adder), ~fn.EXISTS(deleted)
            )
            added = cls.insert_from(source, [cls.chat, cls.user, cls.joined_at]).as_rowcount().execute() > 0
            if added:
                Event.record(
                    MEMBER_ADDED, chat_id, {"chat_id": chat_id, "user": {"id": user_id, "name": name}}, user_id
                )
        return added

    @classmethod
    def mark_read(cls, chat_id: int, user_id: int, message_id: int, session_id: int | None) -> int:
        """Move the member's read marker forward to message_id, telling their other sessions; the marker after."""
        with db.atomic():
            if _MOVE_READ_MARKER.execute(message_id, user_id, chat_id, message_id).rowcount:
                data = {"chat_id": chat_id, "last_read_id": message_id}
                Event.record(CHAT_READ, chat_id, data, user_id=user_id, session_id=session_id)
            return cls.select(cls.last_read_id).where(cls.chat == chat_id, cls.user == user_id).scalar()

    @classmethod
    def members_of(cls, chat_id: int) -> list[dict]:
        rows = (
            User.select(User.id, User.name)
            .join(cls, on=(cls.user == User.id))
            .where(cls.chat == chat_id)
            .order_by(cls.id)
            .tuples()
        )
        return [{"id": user_id, "name": name} for user_id, name in rows]

    @classmethod
    def leave(cls, chat_id: int, user_id: int) -> None:
        """Leave a chat; the last member out deletes it: gone at once, its messages purged in batches after."""
        with db.atomic():
            _lock_chats(Chat.id == chat_id)
            left = cls.delete().where(cls.chat == chat_id, cls.user == user_id).execute()
            emptied = DeletedChat.mark(Chat.select(Chat.id).where(Chat.id == chat_id, ~fn.EXISTS(_members_of(Chat.id))))
            if left:
                Event.record(MEMBER_LEFT, chat_id, {"chat_id": chat_id, "user_id": user_id}, user_id)
        if emptied:
            Chat.purge_deleted()

    @classmethod
    def leave_some(cls, user_id: int) -> int:
        """Leave up to BATCH_ROWS of the user's chats, marking those left empty as deleted; how many were left."""
        batch = cls.select(cls.id, cls.chat).where(cls.user == user_id).order_by(cls.chat).limit(BATCH_ROWS).tuples()
        ids, chats = [membership for membership, _ in batch], [chat for _, chat in batch]
        if not ids:
            return 0
        _lock_chats(Chat.id.in_(chats))
        others = cls.alias()
        alone = others.select(others.id).where(others.chat == cls.chat, others.user != user_id)
        DeletedChat.mark(cls.select(cls.chat).where(cls.id.in_(ids), ~fn.EXISTS(alone)))
        left = cls.delete().where(cls.id.in_(ids)).execute()
        Event.record_many(
            [
                {
                    "kind": MEMBER_LEFT,
                    "chat_id": chat,
                    "user_id": user_id,
                    "data": {"chat_id": chat, "user_id": user_id},
                }
                for chat in chats
            ]
        )
        return left


class Message(BaseModel):
    id = NeverReusedIdField()
    chat = ForeignKeyField(Chat, backref="messages", on_delete="CASCADE", index=False)
    # A plain column, not a foreign key: authorship outlives the sender's account.
    sender_id = IntegerField()
    content = TextField()
    time = UTCDateTimeField(default=utcnow)
    edited_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("chat", "id"), False),)

    @classmethod
    def create_table(cls, safe=True, **options):
        """The table, and its full-text index (migrations.message_search), as a migrated database has them."""
        super().create_table(safe, **options)
        migrations.message_search(cls._meta.database.obj)

    @classmethod
    def drop_table(cls, safe=True, drop_sequences=True, **options):
        migrations.drop_message_search(cls._meta.database.obj)
        super().drop_table(safe, drop_sequences, **options)

    @classmethod
    def send(cls, chat_id: int, sender_id: int, content: str) -> int | None:
        """Store a message if the sender is a member of the chat, checked in the same write, and move the sender's
        read marker to it; its id, else None.

        A chat's messages are timed in id order. SQLite's write transactions run one at a time, so the time is
        taken once this one has begun; on PostgreSQL sends to the chat take turns (_send_message) and the
        database's clock times the row as it is inserted.
        """
        if isinstance(db.obj, PostgresqlDatabase):  # one round trip: one transaction, or a part of the caller's
            member, marker = (sender_id, chat_id), (sender_id, chat_id)
            row = _SEND_MESSAGE.first(chat_id, *member, chat_id, sender_id, content, *member, *marker)
            if row is None:
                return None
            _recorded.pending = True
            return row[0]
        with db.atomic():
            row = _SEND_MESSAGE.first(chat_id, sender_id, content, utcnow(), sender_id, chat_id)
            if row is None:
                return None
            message_id, time = row
            _MOVE_READ_MARKER.execute(message_id, sender_id, chat_id, message_id)
            message = _message_json(message_id, content, sender_id, time, None)
            Event.record(MESSAGE_CREATED, chat_id, _message_created(chat_id, message))
        return message_id

    @classmethod
    def one(cls, chat_id: int, message_id: int) -> dict | None:
        """A message of the chat, as its history shows it; None if the chat has no message of that id."""
        row = _MESSAGE.first(message_id, chat_id)
        return None if row is None else _message_json(*row)

    @classmethod
    def edit(cls, chat_id: int, message_id: int, sender_id: int, content: str) -> dict | None:
        """Give the sender's message new text, keeping the text it had (MessageVersion) and telling the members;
        the message as it is now, or None if the chat has no message of that id from that sender, or the sender
        is no longer a member (checked inside the write, as a send does).

        New text that is the text already there changes nothing.
        """
        with db.atomic():
            member = Membership.select(Membership.id).where(Membership.chat == chat_id, Membership.user == sender_id)
            query = cls.select(cls.id, cls.content, cls.sender_id, cls.time, cls.edited_at).where(
                cls.id == message_id, cls.chat == chat_id, cls.sender_id == sender_id, fn.EXISTS(member)
            )
            if isinstance(db.obj, PostgresqlDatabase):  # two edits of one message take turns
                query = query.for_update()
            row = query.tuples().first()
            if row is None:
                return None
            _, before, _, time, edited_at = row
            if content == before:
                return _message_json(message_id, content, sender_id, time, edited_at)
            edited_at = utcnow()
            MessageVersion.insert(message=message_id, content=before, replaced_at=edited_at).execute()
            cls.update(content=content, edited_at=edited_at).where(cls.id == message_id).execute()
            message = _message_json(message_id, content, sender_id, time, edited_at)
            Event.record(MESSAGE_EDITED, chat_id, {"chat_id": chat_id, "message": message})
        return message

    @classmethod
    def search(
        cls, reader_id: int, terms: list[search.Term], chat_id: int | None, limit: int, before: int | None
    ) -> list[dict]:
        """The newest `limit` messages below `before` that match every term, in the chats the reader is a member
        of (only `chat_id`'s, when given), each with its chat id."""
        if not terms:
            return []
        postgres = isinstance(db.obj, PostgresqlDatabase)
        query = search.tsquery(terms) if postgres else search.fts5_query(terms)
        below = MAX_ID if before is None else before
        if chat_id is None:
            rows = _SEARCH.rows(reader_id, query, below, limit)
        else:
            rows = _SEARCH_ONE_CHAT.rows(reader_id, query, below, chat_id, limit)
        return [
            {"id": message_id, "chat_id": chat, **_message_json(message_id, content, sender, time, edited_at)}
            for message_id, chat, content, sender, time, edited_at in rows
        ]

    def remove(self) -> None:
        with db.atomic():
            self.delete_instance()
            Event.record(MESSAGE_DELETED, self.chat_id, {"chat_id": self.chat_id, "message_id": self.id})

    @classmethod
    def page(
        cls, chat_id: int, reader_id: int, session: "SessionLookup", limit: int, before: int | None, after: int | None
    ) -> tuple[list[dict], "LiveSession | None"]:
        """At most `limit` messages with ids between the cursors, oldest first; none unless the reader is a member
        with a live session (Session.lookup), whose (id, last seen) comes with them, as in Chat.listing_for.

        Catching up (only `after`) takes the oldest ones past the cursor; everything else the newest.
        """
        lowest, highest = 0 if after is None else after, MAX_ID if before is None else before
        bounds = (*session, reader_id, chat_id, lowest, highest, reader_id, chat_id, limit)
        if after is not None and before is None:
            rows = _MESSAGES_OLDEST_FIRST.rows(*bounds)
        else:
            rows = _MESSAGES_NEWEST_FIRST.rows(*bounds)
            rows.reverse()
        messages = [_message_json(*row[:5]) for row in rows]
        return messages, ((rows[0][-2], rows[0][-1]) if rows else None)


class MessageVersion(BaseModel):
    """A text a message had before an edit, kept as Zulip keeps them (no endpoint reads them yet); it goes when its
    message does."""

    message = ForeignKeyField(Message, backref="versions", on_delete="CASCADE", index=False)
    content = TextField()
    replaced_at = UTCDateTimeField()

    class Meta:
        indexes = ((("message", "id"), False),)


class MessageSearch(FTS5Model):
    """SQLite's full-text index of messages (migrations.message_search makes it), for queries; on PostgreSQL a
    GIN index on the message table serves them instead."""

    rowid = RowIDField()
    content = SearchField()

    class Meta:
        database = db
        table_name = "message_search"


class DeletedChat(BaseModel):
    """A chat whose last member left: gone from the API at once, its messages and row purged in batches after."""

    chat = ForeignKeyField(Chat, primary_key=True, backref="deletion", on_delete="CASCADE")

    @classmethod
    def mark(cls, chats) -> int:
        """List the chats a query selects as deleted; how many were new."""
        return cls.insert_from(chats, [cls.chat]).on_conflict_ignore().as_rowcount().execute()


# The event types streams deliver (openapi/chat.yaml, GET /api/events), and one they never see: a session that
# ended (logout), or all of a user's (account deleted), which ends its streams.
MESSAGE_CREATED = "message.created"
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"
CHAT_RENAMED = "chat.renamed"
MEMBER_ADDED = "member.added"
MEMBER_LEFT = "member.left"
CHAT_READ = "chat.read"
SESSION_ENDED = "session.ended"

EVENTS_CHANNEL = "chat_events"  # PostgreSQL NOTIFY channel; the payload is the newest event id
EVENT_LOCK_KEY = 0x63686175  # PostgreSQL advisory lock: event ids become visible in id order
PRUNE_LOCK_KEY = 0x63686176

_recorded = threading.local()


class Event(BaseModel):
    """A committed change, for the streams of the members of its chat (or of its user), in id order.

    Every event is recorded in the transaction that makes its change, as that transaction's last statement,
    so it exists exactly when the change was committed. On PostgreSQL a transaction-level advisory lock is held
    from the insert to the commit: ids are then visible in id order, and a stream that has seen id 11 can
    never later find a 10 it skipped.
    """

    id = NeverReusedBigIdField()
    kind = CharField(max_length=32)
    chat_id = IntegerField(null=True)
    # Whom it concerns: the member added or gone, the reader, the user whose sessions ended.
    user_id = IntegerField(null=True)
    # The session it came from (chat.read) or that ended (session.ended; null: all of the user's).
    session_id = IntegerField(null=True)
    data = TextField()
    time = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("chat_id", "id"), False), (("user_id", "id"), False))

    @classmethod
    def record(cls, kind: str, chat_id: int | None, data: dict, user_id: int | None = None, session_id=None) -> None:
        cls.record_many(
            [{"kind": kind, "chat_id": chat_id, "user_id": user_id, "session_id": session_id, "data": data}]
        )

    @classmethod
    def record_many(cls, events: list[dict]) -> None:
        """Insert events; call it last in the transaction, after every other write."""
        if not events:
            return
        database, time = db.obj, utcnow()
        rows = [{**event, "data": json.dumps(event["data"], ensure_ascii=False), "time": time} for event in events]
        if isinstance(database, PostgresqlDatabase):
            # In the COMMIT's round trip (roundtrips.py): take the event lock, insert, notify the newest id.
            if len(rows) == 1:  # every send: the statement is built once
                values = _event_values(rows[0])
                database.at_commit(_RECORD_EVENT_AND_NOTIFY.sql(database, values), values)
            else:
                for query in _record_and_notify(cls.insert_many(rows)):
                    database.at_commit(*database.get_sql_context().sql(query).query())
        elif len(rows) == 1:
            _RECORD_EVENT.execute(*_event_values(rows[0]))
        else:
            cls.insert_many(rows).execute()
        _recorded.pending = True

    @staticmethod
    def recorded_since_asked() -> bool:
        """Whether this thread recorded events since it last asked (they are committed once its handler is done)."""
        pending = getattr(_recorded, "pending", False)
        _recorded.pending = False
        return pending

    @classmethod
    def _newest(cls):
        # Pruning deletes from the oldest up, so when no event is left the newest is the last one pruned.
        pruned = PrunedEvents.select(fn.MAX(PrunedEvents.through))
        return cls.select(fn.COALESCE(fn.MAX(cls.id), pruned, 0))

    @classmethod
    def head(cls) -> int:
        """The newest event id, 0 when there has been none."""
        return cls._newest().scalar()

    @classmethod
    def snapshot(cls, user_id: int) -> tuple[int, set[int]]:
        """The newest event id and the chats the user is in, read together: the chats are as that event left them."""
        head = cls._newest()
        mine = Membership.select(head, Membership.chat).where(Membership.user == user_id)
        rows = list(mine.union_all(User.select(head, SQL("NULL")).where(User.id == user_id)).tuples())
        newest = max((row[0] for row in rows), default=None)
        if newest is None:  # the account is gone
            return cls.head(), set()
        return newest, {chat for _, chat in rows if chat is not None}

    @classmethod
    def replay(cls, user_id: int, after: int, upto: int, limit: int) -> list[tuple]:
        """The oldest `limit` events in (after, upto] of every chat the user is or was in since `after`."""
        mine = Membership.select(Membership.chat).where(Membership.user == user_id)
        touched = cls.select(cls.chat_id).where(cls.user_id == user_id, cls.id > after, cls.kind == MEMBER_LEFT)
        return list(
            cls.select(*ROW_FIELDS)
            .where(cls.id > after, cls.id <= upto, cls.chat_id.in_(mine) | cls.chat_id.in_(touched))
            .order_by(cls.id)
            .limit(limit)
            .tuples()
        )

    @classmethod
    def memberships_changed(cls, user_id: int, after: int, upto: int) -> list[tuple[int, str]]:
        """(chat, kind) of the user's joins and leaves in (after, upto], in order."""
        return list(
            cls.select(cls.chat_id, cls.kind)
            .where(cls.user_id == user_id, cls.id > after, cls.id <= upto, cls.kind.in_([MEMBER_ADDED, MEMBER_LEFT]))
            .order_by(cls.id)
            .tuples()
        )

    @classmethod
    def newer_than(cls, after: int, limit: int) -> list[tuple]:
        return _EVENTS_AFTER.rows(after, limit)

    @classmethod
    def pruned_through(cls) -> int:
        """The newest event id pruned: a stream that last saw an older one may have missed events."""
        return PrunedEvents.select(PrunedEvents.through).where(PrunedEvents.id == 1).scalar() or 0

    @classmethod
    def prune(cls, older_than: datetime.datetime) -> None:
        """Delete the events recorded before `older_than`, oldest first, a batch per transaction."""
        in_batches(lambda: _prune_step(older_than))


class PrunedEvents(BaseModel):
    """One row: the newest event id that pruning deleted."""

    id = IntegerField(primary_key=True)
    through = BigIntegerField()


class IdempotencyKey(BaseModel):
    """The response to a request sent with an Idempotency-Key, kept a day so a retry gets it again (idempotency.py).

    The user is a plain column, like Message.sender_id: user ids are never reused, and the row expires anyway.
    Status and body are null only inside the transaction that claimed the key, until the handler has answered.
    """

    user_id = IntegerField()
    key = CharField(max_length=128)
    request_hash = CharField(max_length=64)  # sha256 of the operation, its path parameters and its body
    status = IntegerField(null=True)
    body = TextField(null=True)  # the response body as JSON
    location = TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user_id", "key"), True), (("created_at",), False))


ROW_FIELDS = (Event.id, Event.kind, Event.chat_id, Event.user_id, Event.session_id, Event.data)


def _prune_step(older_than: datetime.datetime) -> bool:
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,))
    through = None
    for event_id, time in Event.select(Event.id, Event.time).order_by(Event.id).limit(BATCH_ROWS).tuples():
        if time >= older_than:
            break
        through = event_id
    if through is None:
        return False
    Event.delete().where(Event.id <= through).execute()
    PrunedEvents.insert(id=1, through=through).on_conflict(
        conflict_target=[PrunedEvents.id], update={PrunedEvents.through: through}
    ).execute()
    return True


# Rows a bulk delete removes per transaction: deleting 2,000 messages holds SQLite's write lock for 2-5 ms on two cores.
BATCH_ROWS = 2_000
# Deleted chats purged together: their messages BATCH_ROWS at a time, then their rows (about 5 µs each on SQLite).
CHATS_PER_PURGE = 1_000
PURGE_LOCK_KEY = 0x63686174  # "chat": PostgreSQL's advisory lock for purges


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


def _members_of(chat):
    return Membership.select(Membership.id).where(Membership.chat == chat)


def _deleted_chats(only_memberless: bool = True):
    """The first deleted chats still to purge, as a subquery; one revived by a member added meanwhile is kept."""
    chats = DeletedChat.select(DeletedChat.chat).order_by(DeletedChat.chat).limit(CHATS_PER_PURGE)
    return chats.where(~fn.EXISTS(_members_of(DeletedChat.chat))) if only_memberless else chats


def _purge_step() -> bool:
    """Delete a batch of the deleted chats' messages or, once they have none, the chats; whether anything went."""
    _one_purge_at_a_time()
    messages = Message.select(Message.id).where(Message.chat.in_(_deleted_chats())).limit(BATCH_ROWS)
    if Message.delete().where(Message.id.in_(messages)).execute():
        return True
    left = Message.select(Message.id).where(Message.chat == Chat.id)
    purged = Chat.delete().where(Chat.id.in_(_deleted_chats()), ~fn.EXISTS(left)).execute()
    revived = DeletedChat.delete().where(
        DeletedChat.chat.in_(_deleted_chats(only_memberless=False)), fn.EXISTS(_members_of(DeletedChat.chat))
    )
    return purged + revived.execute() > 0


def _lock_chats(where, mode: str = "FOR NO KEY UPDATE") -> None:
    """On PostgreSQL, lock the chats whose memberships this transaction changes, in id order.

    Otherwise two members leaving at once could each still see the other and neither mark the chat deleted.
    SQLite's IMMEDIATE transactions already run one at a time. NO KEY UPDATE lets messages still be inserted;
    an added member takes FOR SHARE, which waits for a leave in progress.
    """
    if isinstance(db.obj, PostgresqlDatabase):
        Chat.select(Chat.id).where(where).order_by(Chat.id).for_update(mode).execute()


def _one_purge_at_a_time() -> None:
    """On PostgreSQL, purge transactions take turns (they may delete the same rows in a different order)."""
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PURGE_LOCK_KEY,))


def _live_session(user):
    """The join condition that finds the user's live session (parameters: Session.lookup's three, then `user`)."""
    seen = fn.COALESCE(Session.last_seen_at, Session.created_at)
    return (Session.token_hash == "") & (Session.created_at > utcnow()) & (seen > utcnow()) & (Session.user == user)


# The session's last request, as the hot reads return it on every row: as text, which only the first row's is
# parsed from (Session.confirm), instead of PostgreSQL's driver making a datetime for each row.
_SESSION_SEEN = fn.COALESCE(Session.last_seen_at, Session.created_at).cast("text")


def _time_text(column, rfc3339: bool = False):
    """A PostgreSQL time column as text with no fraction when it is zero, as isoformat() writes it: in the form
    SQLite stores ("2026-11-27 05:25:30.123456"), which rfc3339() reads, or with `rfc3339` already RFC 3339."""
    date = SQL("""'YYYY-MM-DD"T"HH24:MI:SS'""" if rfc3339 else "'YYYY-MM-DD HH24:MI:SS'")
    whole = fn.date_trunc(SQL("'second'"), column) == column
    text = fn.to_char(column, date).concat(Case(None, [(whole, SQL("''"))], fn.to_char(column, SQL("'.US'"))))
    return text.concat(SQL("'Z'")) if rfc3339 else text


def _time_as_stored(column):
    """A time column as the text SQLite stores: PostgreSQL formats it itself, for the hot reads, where its driver
    would build a datetime for every row, which rfc3339() then formats again (BENCHMARKS.md)."""
    return _time_text(column) if isinstance(db.obj, PostgresqlDatabase) else column


def _messages_between(order):
    # Only for a member with a live session, both checked in this query: the session as a join (one row at most,
    # by its unique hash), the membership once (no correlation, so SQLite evaluates it once and PostgreSQL plans
    # it as a one-time filter). A request then makes this one query (handlers/messages.py).
    member = Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0)
    return (
        Message.select(
            Message.id,
            Message.content,
            Message.sender_id,
            _time_as_stored(Message.time),
            _time_as_stored(Message.edited_at),
            Session.id,
            _SESSION_SEEN,
        )
        .join(Session, on=_live_session(0))
        .where(Message.chat == 0, Message.id > 0, Message.id < 0, fn.EXISTS(member))
        .order_by(order)
        .limit(1)
    )


# A chat's place in the list is (activity, id), largest first. A cursor names the last chat a page showed as
# "<activity in microseconds since 1970>-<chat id>", and the next page holds the chats at or below
# (activity, id - 1): strictly after that chat. Any cursor of that shape is a place in the list, even one
# no page handed out; 16 digits of microseconds reach past the year 2200, well inside datetime's range.
LISTING_START = (datetime.datetime.max, MAX_ID)
_EPOCH = datetime.datetime(1970, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)


def listing_cursor(activity: datetime.datetime | str, chat_id: int) -> str:
    if isinstance(activity, str):
        activity = datetime.datetime.fromisoformat(activity)
    return f"{(activity - _EPOCH) // _MICROSECOND}-{chat_id}"


def listing_position(cursor: str) -> tuple[datetime.datetime, int]:
    micros, chat_id = cursor.split("-")
    # Every real id is at most MAX_ID, so clamping a larger one selects the same chats and keeps it bindable.
    return _EPOCH + int(micros) * _MICROSECOND, min(int(chat_id) - 1, MAX_ID)


def _chat_listing():
    # Sorting every chat of the user is unavoidable, since activity is computed; the page is chosen on the keys
    # alone, and only its own chats fetch their last message, which may be 10,000 characters.
    newest = Message.select(fn.MAX(Message.id)).where(Message.chat == Chat.id)
    newest_row = Message.alias("newest")
    activity = fn.COALESCE(newest_row.time, Chat.created_at)
    page = (
        Chat.select(
            Chat.id,
            Chat.title,
            newest_row.id.alias("last_id"),
            activity.alias("activity"),
            Membership.last_read_id,
            Membership.user,
            Session.id.alias("session_id"),
            _SESSION_SEEN.alias("seen"),
        )
        .join(Session, on=_live_session(0))  # the caller's live session, checked here too (Message.page says why)
        .join(Membership, on=(Membership.chat == Chat.id))
        .join(newest_row, JOIN.LEFT_OUTER, on=(newest_row.id == newest))
        .where(Membership.user == 0, Tuple(activity, Chat.id) <= Tuple(*LISTING_START))
        .order_by(activity.desc(), Chat.id.desc())
        .limit(1)
        .alias("page")
    )
    last = Message.alias("last")
    # Counting stops at UNREAD_CAP: an index range scan of at most that many messages per chat on the page.
    after_marker = Message.alias("unread")
    unread_rows = (
        after_marker.select(SQL("1"))
        .where(
            after_marker.chat == page.c.id,
            after_marker.id > fn.COALESCE(page.c.last_read_id, SQL("0")),
            after_marker.sender_id != page.c.user_id,
        )
        .limit(SQL(str(UNREAD_CAP)))
    )
    unread = Message.select(fn.COUNT(SQL("*"))).from_(unread_rows.alias("capped"))
    return (
        Chat.select(
            page.c.id,
            page.c.title,
            last.content,
            _time_as_stored(last.time),
            last.sender_id,
            page.c.last_read_id,
            unread,
            page.c.activity,
            page.c.session_id,
            page.c.seen,
        )
        .from_(page)
        .join(last, JOIN.LEFT_OUTER, on=(last.id == page.c.last_id))
        .order_by(page.c.activity.desc(), page.c.id.desc())
    )


UNREAD_CAP = 999


# The queries of the hot paths; each placeholder value marks where a parameter goes.
_SESSION_USER = Statement(
    # Parameters: the token's hash, then the oldest created_at and the oldest last request a live session has.
    lambda: Session.select(Session.user, Session.id, fn.COALESCE(Session.last_seen_at, Session.created_at)).where(
        Session.token_hash == "",
        Session.created_at > utcnow(),
        fn.COALESCE(Session.last_seen_at, Session.created_at) > utcnow(),
    ),
    prepared=True,
)
_MEMBERSHIP = Statement(
    lambda: Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0), prepared=True
)
_CHAT_LISTING = Statement(_chat_listing, prepared=True)
# Parameters: the message, then its chat.
_MESSAGE = Statement(
    lambda: Message.select(Message.id, Message.content, Message.sender_id, Message.time, Message.edited_at).where(
        Message.id == 0, Message.chat == 0
    )
)


def _search(in_one_chat: bool):
    """Parameters: the reader, the query (search.fts5_query or search.tsquery), the cursor, the chat if
    `in_one_chat`, the limit. SQLite walks its FTS5 index newest first and stops at the limit; PostgreSQL
    matches the GIN index on the messages' tsvector (migrations.message_search)."""
    columns = (Message.id, Message.chat, Message.content, Message.sender_id, Message.time, Message.edited_at)
    readable = (Membership.chat == Message.chat) & (Membership.user == 0)
    if isinstance(db.obj, PostgresqlDatabase):
        vector = fn.to_tsvector(SQL("'simple'"), Message.content)
        matches = Expression(vector, "@@", fn.to_tsquery(SQL("'simple'"), ""))
        query = Message.select(*columns).join(Membership, on=readable).where(matches, Message.id < 0)
        newest_first = Message.id.desc()
    else:
        query = (
            Message.select(*columns)
            .join(MessageSearch, on=(MessageSearch.rowid == Message.id))
            .join(Membership, on=readable, src=Message)
            .where(MessageSearch.match(""), MessageSearch.rowid < 0)
        )
        newest_first = MessageSearch.rowid.desc()
    if in_one_chat:
        query = query.where(Message.chat == 0)
    return query.order_by(newest_first).limit(1)


_SEARCH = Statement(lambda: _search(in_one_chat=False))
_SEARCH_ONE_CHAT = Statement(lambda: _search(in_one_chat=True))
_MESSAGES_NEWEST_FIRST = Statement(lambda: _messages_between(Message.id.desc()), prepared=True)
_MESSAGES_OLDEST_FIRST = Statement(lambda: _messages_between(Message.id.asc()), prepared=True)


def _send_message():
    """A send: the insert, which returns the id and the time.

    SQLite is given the time, and the read marker and the event are statements of their own in the caller's
    transaction. On PostgreSQL the send is one string of statements, one round trip and, outside a transaction,
    one implicit transaction (roundtrips.py says why):

    1. lock the chat's row, so that sends to one chat take turns and their times follow their ids (a statement
       of its own: in an INSERT ... SELECT ... FOR NO KEY UPDATE the clock may be read before the lock is
       granted), then the sender's membership row;
    2. take the event lock (Event says why), held to the commit;
    3. insert the message timed by the database's clock, move the sender's read marker to it, record its
       `message.created` event and notify the streams, as one data-modifying WITH. The event's data is built
       here in SQL, the same JSON as Event.record would write (`_message_created` in Python; tests compare
       the two), because the event needs the id and the time the insert makes.

    NO KEY UPDATE is the mode an UPDATE of the title takes. It lets through the FOR KEY SHARE that the foreign
    keys of new messages and memberships take on the chat, and every plain read; it queues only with renames and
    leaves (FOR NO KEY UPDATE) and adds (FOR SHARE), short one-chat transactions like a send, and with the purge's
    delete. As each send's first lock it cannot close a cycle with leave_some's chats in id order.
    """
    postgres = isinstance(db.obj, PostgresqlDatabase)
    time = fn.timezone(SQL("'UTC'"), fn.clock_timestamp()) if postgres else Value(utcnow())
    insert = Message.insert_from(
        Membership.select(Value(0), Value(0), Value(""), time).where(Membership.user == 0, Membership.chat == 0),
        [Message.chat, Message.sender_id, Message.content, Message.time],
    )
    if not postgres:
        return insert.returning(Message.id, Message.time)
    lock = Chat.select(Chat.id).where(Chat.id == 0).for_update("FOR NO KEY UPDATE")
    # The sender's membership row before the event lock, as mark_read takes them (its UPDATE, then the event
    # lock at its commit): taken the other way round, a send and a mark-read of one member deadlock.
    member = Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0)
    event_lock = Select(columns=[fn.pg_advisory_xact_lock(SQL(str(EVENT_LOCK_KEY)))])
    sent = insert.returning(Message.id, Message.time, Message.chat, Message.sender_id, Message.content).cte("sent")
    marked = (
        Membership.update(last_read_id=sent.c.id)
        .from_(sent)
        .where(
            Membership.user == 0,
            Membership.chat == 0,
            Membership.last_read_id.is_null() | (Membership.last_read_id < sent.c.id),
        )
        .cte("marked")
    )
    message = fn.jsonb_build_object(
        SQL("'id'"), sent.c.id, SQL("'content'"), sent.c.content, SQL("'sender_id'"), sent.c.sender_id,
        SQL("'time'"), _time_text(sent.c.time, rfc3339=True), SQL("'edited_at'"), SQL("NULL"),
    )  # fmt: skip
    # jsonb prints ": " and ", " as json.dumps does (json prints " : "); its keys come shortest first.
    data = fn.jsonb_build_object(SQL("'chat_id'"), sent.c.chat_id, SQL("'message'"), message).cast("text")
    recorded = (
        Event.insert_from(
            Select((sent,), [SQL(f"'{MESSAGE_CREATED}'"), sent.c.chat_id, data, sent.c.time]),
            [Event.kind, Event.chat_id, Event.data, Event.time],
        )
        .returning(Event.id)
        .cte("recorded")
    )
    notify = fn.pg_notify(SQL(f"'{EVENTS_CHANNEL}'"), recorded.c.id.cast("text"))
    answer = Select((sent, recorded), [sent.c.id, sent.c.time, notify]).with_cte(sent, marked, recorded)
    return [lock, member.for_update("FOR NO KEY UPDATE"), event_lock, answer]


# Parameters: on SQLite the chat, sender, content, time, sender, chat; on PostgreSQL (_send_message says why)
# the chat to lock, the sender and chat of the membership to lock, then the chat, sender, content, sender, chat
# of the insert, then the sender and chat whose read marker moves.
_SEND_MESSAGE = Statement(_send_message)


def _message_json(message_id: int, content: str, sender_id: int, time, edited_at) -> dict:
    """A message as the API shows it (the Message schema)."""
    return {
        "id": message_id,
        "content": content,
        "sender_id": sender_id,
        "time": rfc3339(time),
        "edited_at": rfc3339(edited_at),
    }


def _message_created(chat_id: int, message: dict) -> dict:
    """The data of a message.created event; on PostgreSQL a send builds the same JSON in SQL (_send_message)."""
    return {"chat_id": chat_id, "message": message}


_MOVE_READ_MARKER = Statement(
    lambda: Membership.update(last_read_id=0).where(
        Membership.user == 0,
        Membership.chat == 0,
        Membership.last_read_id.is_null() | (Membership.last_read_id < 0),
    )
)


def _event_values(row: dict) -> tuple:
    return (row["kind"], row["chat_id"], row.get("user_id"), row.get("session_id"), row["data"], row["time"])


def _record_and_notify(insert) -> list:
    """PostgreSQL: take the event lock, run the insert, and notify the streams of the newest id, as two statements.

    The lock is held from here to the commit, so event ids become visible in id order (Event).
    """
    recorded = insert.returning(Event.id).cte("recorded")
    # The channel and the lock's key are constants of this module, written into the SQL.
    notify = recorded.select_from(fn.pg_notify(SQL(f"'{EVENTS_CHANNEL}'"), fn.MAX(recorded.c.id).cast("text")))
    return [Select(columns=[fn.pg_advisory_xact_lock(SQL(str(EVENT_LOCK_KEY)))]), notify]


_EVENT_PLACEHOLDER = {"kind": "", "chat_id": 0, "user_id": 0, "session_id": 0, "data": ""}
_RECORD_EVENT = Statement(lambda: Event.insert(**_EVENT_PLACEHOLDER, time=utcnow()))
_RECORD_EVENT_AND_NOTIFY = Statement(lambda: _record_and_notify(Event.insert(**_EVENT_PLACEHOLDER, time=utcnow())))
_EVENTS_AFTER = Statement(
    lambda: Event.select(*ROW_FIELDS).where(Event.id > 0).order_by(Event.id).limit(1), prepared=True
)

MODELS = [User, Session, Chat, Membership, Message, MessageVersion, DeletedChat, Event, PrunedEvents, IdempotencyKey]
