"""Peewee models for users, sessions, chats, memberships and messages."""

import datetime
import hashlib
import secrets
import sqlite3
import threading
from urllib.parse import urlparse

from peewee import (
    JOIN,
    SQL,
    AutoField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
    Value,
    fn,
)
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from .passwords import DEFAULT_CONCURRENCY, Passwords

db = DatabaseProxy()
MAX_ID = 2**63 - 1

passwords = Passwords()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
}


class SqliteSerializedWrites(PooledSqliteDatabase):
    """Pooled SQLite whose write transactions queue on one in-process lock.

    Transactions begin IMMEDIATE, so a transaction that reads and then writes never fails with
    "database is locked" when another writer commits in between; the lock makes this process's
    writers wait their turn in Python instead of sleeping in SQLite's busy handler, which keeps
    the tail short. Other processes still wait through busy_timeout. The lock is taken in begin()
    and given back at commit or rollback, because `db.atomic()` on the proxy never calls a
    subclass's atomic().
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, lock_type="IMMEDIATE", **kwargs)
        self._write_lock = threading.Lock()
        self._holder = threading.local()

    def begin(self, *args, **kwargs):
        self._write_lock.acquire()
        self._holder.locked = True
        try:
            super().begin(*args, **kwargs)
        except BaseException:
            self._release()
            raise

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
        return PooledPostgresqlDatabase(max_connections=64, stale_timeout=300, **kwargs)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def init_db(
    url: str, create_tables: bool = True, password_profile: str = "secure", hash_concurrency: int | None = None
):
    global passwords
    passwords = Passwords(password_profile, hash_concurrency or DEFAULT_CONCURRENCY)
    database = connect(url)
    db.initialize(database)
    if create_tables:
        with db.connection_context():
            db.create_tables(MODELS, safe=True)
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
    """

    def __init__(self, build):
        self._build = build
        self._sql: dict[type, tuple[str, int]] = {}

    def execute(self, *params):
        database = db.obj
        compiled = self._sql.get(type(database))
        if compiled is None:
            sql, sample = self._build().sql()
            compiled = self._sql[type(database)] = (sql, len(sample))
        sql, expected = compiled
        if len(params) != expected:
            raise TypeError(f"statement takes {expected} parameters, got {len(params)}")
        return database.execute_sql(sql, params)

    def rows(self, *params) -> list[tuple]:
        return self.execute(*params).fetchall()

    def first(self, *params) -> tuple | None:
        return self.execute(*params).fetchone()


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


class BaseModel(Model):
    class Meta:
        database = db


class User(BaseModel):
    id = NeverReusedIdField()
    name = CharField(max_length=64, unique=True)
    email = CharField(max_length=254)
    password_hash = CharField(max_length=255)

    @classmethod
    def by_name(cls, name: str):
        return cls.get_or_none(cls.name == name)

    @classmethod
    def register(cls, name: str, password: str, email: str) -> "User":
        password_hash = passwords.hash(password)
        with db.atomic():
            return cls.create(name=name, email=email, password_hash=password_hash)

    @classmethod
    def authenticate(cls, name: str, password: str):
        """The user with this name and password, else None; unknown names cost a hash too."""
        user = cls.by_name(name)
        return user if passwords.verify(user.password_hash if user else None, password) else None

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "email": self.email}

    def update_profile(self, name: str | None, email: str | None) -> None:
        changes = {field: value for field, value in ((User.name, name), (User.email, email)) if value is not None}
        if changes:
            with db.atomic():
                User.update(changes).where(User.id == self.id).execute()

    def delete_account(self) -> None:
        """Drop the user, their sessions and memberships, and every chat they were the last member of."""
        with db.atomic():
            chat_ids = [m.chat_id for m in Membership.select(Membership.chat).where(Membership.user == self.id)]
            Membership.delete().where(Membership.user == self.id).execute()
            if chat_ids:
                Chat.delete_if_empty(chat_ids)
            Session.delete().where(Session.user == self.id).execute()
            self.delete_instance()


class Session(BaseModel):
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField(default=utcnow)

    @staticmethod
    def hash_token(token: str) -> str:
        # The token holds 256 random bits, so a fast hash is enough: nothing to brute-force.
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def start(cls, user_id: int) -> str:
        token = secrets.token_urlsafe(32)
        with db.atomic():
            cls.create(user=user_id, token_hash=cls.hash_token(token))
        return token

    @classmethod
    def user_for(cls, user_id: int, token: str) -> int | None:
        """The user id when this token is a live session of that user, else None."""
        row = _SESSION_USER.first(cls.hash_token(token))
        return user_id if row is not None and row[0] == user_id else None

    @classmethod
    def revoke(cls, token: str) -> None:
        with db.atomic():
            cls.delete().where(cls.token_hash == cls.hash_token(token)).execute()


class Chat(BaseModel):
    id = NeverReusedIdField()
    title = CharField(max_length=200)
    created_at = UTCDateTimeField(default=utcnow)

    @classmethod
    def create_with_member(cls, title: str, user_id: int) -> "Chat":
        with db.atomic():
            chat = cls.create(title=title)
            Membership.create(chat=chat.id, user=user_id)
        return chat

    @classmethod
    def rename(cls, chat_id: int, title: str) -> None:
        with db.atomic():
            cls.update(title=title).where(cls.id == chat_id).execute()

    @classmethod
    def delete_if_empty(cls, chat_ids: list[int]) -> None:
        members = Membership.select(Membership.chat).where(Membership.chat == cls.id)
        cls.delete().where(cls.id.in_(chat_ids), ~fn.EXISTS(members)).execute()

    @classmethod
    def listing_for(cls, user_id: int) -> list[dict]:
        """The user's chats with their newest message, newest activity first, in one query."""
        return [
            {
                "id": chat_id,
                "title": title,
                "last_message": content,
                "last_message_time": rfc3339(time),
                "sender_id": sender_id,
            }
            for chat_id, title, content, time, sender_id in _CHAT_LISTING.rows(user_id)
        ]


class Membership(BaseModel):
    chat = ForeignKeyField(Chat, backref="memberships", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    joined_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "chat"), True),)

    @classmethod
    def exists(cls, chat_id: int, user_id: int) -> bool:
        return _MEMBERSHIP.first(user_id, chat_id) is not None

    @classmethod
    def add(cls, chat_id: int, user_id: int) -> None:
        with db.atomic():
            cls.create(chat=chat_id, user=user_id)

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
        with db.atomic():
            cls.delete().where(cls.chat == chat_id, cls.user == user_id).execute()
            Chat.delete_if_empty([chat_id])


class Message(BaseModel):
    id = NeverReusedIdField()
    chat = ForeignKeyField(Chat, backref="messages", on_delete="CASCADE", index=False)
    # A plain column, not a foreign key: authorship outlives the sender's account.
    sender_id = IntegerField()
    content = TextField()
    time = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("chat", "id"), False),)

    @classmethod
    def send(cls, chat_id: int, sender_id: int, content: str) -> int | None:
        """Store a message if the sender is a member of the chat, checked in the same write; its id, else None."""
        with db.atomic():
            row = _SEND_MESSAGE.first(chat_id, sender_id, content, utcnow(), sender_id, chat_id)
        return None if row is None else row[0]

    def remove(self) -> None:
        with db.atomic():
            self.delete_instance()

    @classmethod
    def page(cls, chat_id: int, limit: int, before: int | None, after: int | None) -> list[dict]:
        """At most `limit` messages with ids between the cursors, oldest first.

        Catching up (only `after`) takes the oldest ones past the cursor; everything else the newest.
        """
        bounds = (chat_id, 0 if after is None else after, MAX_ID if before is None else before, limit)
        if after is not None and before is None:
            rows = _MESSAGES_OLDEST_FIRST.rows(*bounds)
        else:
            rows = _MESSAGES_NEWEST_FIRST.rows(*bounds)
            rows.reverse()
        return [
            {"id": message_id, "content": content, "sender_id": sender_id, "time": rfc3339(time)}
            for message_id, content, sender_id, time in rows
        ]


def _messages_between(order):
    return (
        Message.select(Message.id, Message.content, Message.sender_id, Message.time)
        .where(Message.chat == 0, Message.id > 0, Message.id < 0)
        .order_by(order)
        .limit(1)
    )


def _chat_listing():
    newest = Message.select(fn.MAX(Message.id)).where(Message.chat == Chat.id)
    last = Message.alias("last")
    return (
        Chat.select(Chat.id, Chat.title, last.content, last.time, last.sender_id)
        .join(Membership, on=(Membership.chat == Chat.id))
        .join(last, JOIN.LEFT_OUTER, on=(last.id == newest))
        .where(Membership.user == 0)
        .order_by(fn.COALESCE(last.time, Chat.created_at).desc(), Chat.id.desc())
    )


# The queries of the hot paths; each placeholder value marks where a parameter goes.
_SESSION_USER = Statement(lambda: Session.select(Session.user).where(Session.token_hash == ""))
_MEMBERSHIP = Statement(lambda: Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0))
_CHAT_LISTING = Statement(_chat_listing)
_MESSAGES_NEWEST_FIRST = Statement(lambda: _messages_between(Message.id.desc()))
_MESSAGES_OLDEST_FIRST = Statement(lambda: _messages_between(Message.id.asc()))
_SEND_MESSAGE = Statement(
    lambda: Message.insert_from(
        Membership.select(Value(0), Value(0), Value(""), Value(utcnow())).where(
            Membership.user == 0, Membership.chat == 0
        ),
        [Message.chat, Message.sender_id, Message.content, Message.time],
    ).returning(Message.id)
)

MODELS = [User, Session, Chat, Membership, Message]
