"""Peewee models for users, sessions, chats, memberships and messages."""

import datetime
import hashlib
import secrets
import threading
from contextlib import contextmanager
from urllib.parse import urlparse

import argon2
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
    fn,
)
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

db = DatabaseProxy()

PASSWORD_PROFILES = {
    "secure": argon2.profiles.RFC_9106_LOW_MEMORY,
    # For load tests and the test suite only: it makes hashing nearly free.
    "cheapest": argon2.profiles.CHEAPEST,
}
passwords = argon2.PasswordHasher.from_parameters(PASSWORD_PROFILES["secure"])
_dummy_hash = ""

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
}


class SqliteSerializedWrites(PooledSqliteDatabase):
    """Pooled SQLite whose write transactions queue on one in-process lock.

    Transactions begin IMMEDIATE, so a transaction that reads and then writes
    never fails with "database is locked" when another writer commits in
    between; the lock makes threads of this process wait their turn in Python
    instead of spinning in SQLite's busy handler, which keeps the tail short.
    Other processes still wait through busy_timeout.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, lock_type="IMMEDIATE", **kwargs)
        self._write_lock = threading.RLock()

    @contextmanager
    def atomic(self, *args, **kwargs):
        with self._write_lock, super().atomic(*args, **kwargs) as txn:
            yield txn


def connect(url: str):
    """Build the database for a URL: sqlite:///path or postgresql://user@host/name."""
    scheme = urlparse(url).scheme
    kwargs = parse_db_url(url)
    if scheme in ("sqlite", "sqlite+pool"):
        kwargs.setdefault("pragmas", SQLITE_PRAGMAS)
        kwargs.setdefault("check_same_thread", False)
        return SqliteSerializedWrites(max_connections=64, stale_timeout=300, **kwargs)
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        return PooledPostgresqlDatabase(max_connections=64, stale_timeout=300, **kwargs)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


def init_db(url: str, create_tables: bool = True, password_profile: str = "secure"):
    global passwords, _dummy_hash
    passwords = argon2.PasswordHasher.from_parameters(PASSWORD_PROFILES[password_profile])
    _dummy_hash = passwords.hash(secrets.token_hex(16))
    database = connect(url)
    db.initialize(database)
    if create_tables:
        with db.connection_context():
            db.create_tables(MODELS, safe=True)
    return database


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def rfc3339(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


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
        try:
            passwords.verify(user.password_hash if user else _dummy_hash, password)
        except argon2.exceptions.VerificationError:
            return None
        return user

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
        row = cls.select(cls.user).where(cls.token_hash == cls.hash_token(token)).tuples().first()
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
        newest = Message.select(fn.MAX(Message.id)).where(Message.chat == cls.id)
        last = Message.alias("last")
        activity = fn.COALESCE(last.time, cls.created_at)
        rows = (
            cls.select(cls.id, cls.title, last.content, last.time, last.sender_id)
            .join(Membership, on=(Membership.chat == cls.id))
            .join(last, JOIN.LEFT_OUTER, on=(last.id == newest))
            .where(Membership.user == user_id)
            .order_by(activity.desc(), cls.id.desc())
            .tuples()
        )
        return [
            {
                "id": chat_id,
                "title": title,
                "last_message": content,
                "last_message_time": rfc3339(last.time.python_value(time) if time is not None else None),
                "sender_id": sender_id,
            }
            for chat_id, title, content, time, sender_id in rows
        ]


class Membership(BaseModel):
    chat = ForeignKeyField(Chat, backref="memberships", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    joined_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "chat"), True),)

    @classmethod
    def exists(cls, chat_id: int, user_id: int) -> bool:
        return cls.select(cls.id).where(cls.user == user_id, cls.chat == chat_id).exists()

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
    def send(cls, chat_id: int, sender_id: int, content: str) -> int:
        with db.atomic():
            return cls.insert(chat=chat_id, sender_id=sender_id, content=content, time=utcnow()).execute()

    def remove(self) -> None:
        with db.atomic():
            self.delete_instance()

    @classmethod
    def page(cls, chat_id: int, limit: int, before: int | None, after: int | None) -> list[dict]:
        query = cls.select(cls.id, cls.content, cls.sender_id, cls.time).where(cls.chat == chat_id)
        if before is not None:
            query = query.where(cls.id < before)
        if after is not None:
            query = query.where(cls.id > after)
        catching_up = after is not None and before is None
        rows = list(query.order_by(cls.id.asc() if catching_up else cls.id.desc()).limit(limit).tuples())
        if not catching_up:
            rows.reverse()
        to_python = cls.time.python_value
        return [
            {"id": mid, "content": content, "sender_id": sender, "time": rfc3339(to_python(time))}
            for mid, content, sender, time in rows
        ]


MODELS = [User, Session, Chat, Membership, Message]
