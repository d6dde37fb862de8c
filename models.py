"""Peewee models for users, sessions, chats, memberships, messages, and the event log that streams read."""

import contextlib
import datetime
import hashlib
import json
import logging
import secrets
import threading

from peewee import (
    SQL,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    TextField,
    Value,
    fn,
)
from playhouse.sqlite_ext import FTS5Model, RowIDField, SearchField

from .core import names
from .core.times import utcnow
from .storage import migrations, purges, queries, search
from .storage.batches import BATCH_ROWS, in_batches

# Engine setup, Statement and the hot SQL live in storage/; the names tests and tools import from here (`x as x`)
# stay importable.
from .storage.engines import WouldWait, db
from .storage.engines import connect as connect
from .storage.engines import init_db as init_db
from .storage.engines import queries_are_local as queries_are_local
from .storage.fields import NeverReusedBigIdField, NeverReusedIdField, UTCDateTimeField
from .storage.queries import EVENT_LOCK_KEY as EVENT_LOCK_KEY
from .storage.queries import EVENTS_CHANNEL as EVENTS_CHANNEL
from .storage.queries import (
    LISTING_START,
    MAX_ID,
    MESSAGE_CREATED,
    PLAIN,
    REACTION_SEPARATOR,
    Post,
    event_values,
    listing_position,
    message_columns,
    message_created,
    message_json,
    new_message_json,
    replied,
)
from .storage.statement import Statement as Statement

log = logging.getLogger("chat")

# Session.lookup's parameters: a token's hash, the oldest created_at and the oldest last request a live session has.
SessionLookup = tuple[str, datetime.datetime, datetime.datetime]
# A live session found by a hot read: its id and its last request (a datetime, or its text form).
LiveSession = tuple[int, datetime.datetime | str]


class BaseModel(Model):
    class Meta:
        database = db


class User(BaseModel):
    id = NeverReusedIdField()
    name = CharField(max_length=64, unique=True)
    # What makes look-alike names one name (core/names.py); a key is up to KEY_EXPANSION times its name's length.
    # NULL only for an account from before keys whose name looks like an older account's (storage/migrations.py).
    name_key = CharField(max_length=names.KEY_LENGTH, null=True, unique=True)
    email = CharField(max_length=254)
    password_hash = CharField(max_length=255)
    # Who may add the user to a chat at once (accounts/consent.py); null: the server's default.
    who_can_add_me = CharField(max_length=16, null=True)
    # The upload whose thumbnail is the user's avatar (files/uploads.py); a plain column, as Upload.owner_id is.
    avatar_upload_id = IntegerField(null=True, index=True)

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
    def register(cls, name: str, password_hash: str, email: str) -> "User":
        """A new account (accounts/passwords.py hashes its password)."""
        with db.atomic():
            return cls.create(
                name=names.display_name(name), name_key=names.name_key(name), email=email, password_hash=password_hash
            )

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "email": self.email, "avatar_url": avatar_url(self.avatar_upload_id)}

    def update_profile(self, name: str | None, email: str | None, who_can_add_me: str | None = None) -> None:
        changes = {} if name is None else {User.name: names.display_name(name), User.name_key: names.name_key(name)}
        if email is not None:
            changes[User.email] = email
        if who_can_add_me is not None:
            changes[User.who_can_add_me] = who_can_add_me
        if changes:
            with db.atomic():
                User.update(changes).where(User.id == self.id).execute()
                if name is not None and names.display_name(name) != self.name:  # the members of their chats see it
                    Event.user_updated(self.id, names.display_name(name), avatar_url(self.avatar_upload_id))

    def change_password(self, password_hash: str, keep_session: int) -> None:
        """Store a new password's hash and end every other session of the user, together."""
        with db.atomic():
            User.update(password_hash=password_hash).where(User.id == self.id).execute()
            Session.end_all(self.id, keep=keep_session)


class Session(BaseModel):
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField(default=utcnow)
    # When the session last made a request, to a tenth of the idle timeout or a minute (clock_step); null in rows
    # older than the column.
    last_seen_at = UTCDateTimeField(null=True, default=utcnow)

    # The idle clock moves when a request finds it a step behind: a tenth of the idle timeout, and at most once a
    # minute. Writing it on every request would make every read a write (on SQLite, a wait for its one write
    # lock), and a timeout of days needs no finer clock; a short one (the least is MIN_IDLE_SECONDS in
    # accounts/credentials.py) gets a step well inside it, so an active session never ends.
    SEEN_EVERY = datetime.timedelta(seconds=60)
    STEPS_PER_IDLE = 10

    @classmethod
    def clock_step(cls, idle: datetime.timedelta) -> datetime.timedelta:
        return min(cls.SEEN_EVERY, idle / cls.STEPS_PER_IDLE)

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
        tells, and a second, at most once a step (clock_step), moves its idle clock forward.
        """
        row = _SESSION_USER.first(*cls.lookup(token, idle, lifetime))
        if row is None or row[0] != user_id:
            return None
        cls.confirm(row[1], row[2], idle)
        return row[1]

    @classmethod
    def lookup(cls, token: str, idle: datetime.timedelta, lifetime: datetime.timedelta) -> "SessionLookup":
        """What finds this token's session if it is live: its hash, and the oldest created_at and last request a
        live session has. The hot reads take it too, and check the session in their own query."""
        now = utcnow()
        return cls.hash_token(token), now - lifetime, now - idle

    @classmethod
    def confirm(cls, session_id: int, seen: datetime.datetime | str, idle: datetime.timedelta) -> None:
        """A request of this live session arrived: move its idle clock if it is a step behind (clock_step)."""
        now, step = utcnow(), cls.clock_step(idle)
        if cls.last_seen_at.python_value(seen) < now - step:
            cls._seen(session_id, now, step)

    @classmethod
    def _seen(cls, session_id: int, now: datetime.datetime, step: datetime.timedelta) -> None:
        """Move the session's idle clock to `now`, best effort.

        On SQLite this runs on the event loop, inside never_waiting(): when another writer holds the lock, the
        clock stays put and the next request tries again; a step is a tenth of the timeout at most. The condition
        keeps two workers that both saw a stale clock from writing it twice.
        """
        stale = cls.last_seen_at.is_null() | (cls.last_seen_at < now - step)
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
    # "group", or "direct" for the one chat of two people (DirectChat; conversations/direct.py).
    kind = CharField(max_length=8, default="group", constraints=[SQL("DEFAULT 'group'")])

    @classmethod
    def create_with_member(cls, title: str, user_id: int) -> "Chat":
        with db.atomic():
            chat = cls.create(title=title)
            Membership.create(chat=chat.id, user=user_id, joined_by_self=True)
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
        in_batches(
            lambda: purges.purge_step(Chat=Chat, DeletedChat=DeletedChat, Membership=Membership, Message=Message)
        )

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
        return queries.chat_page(_CHAT_LISTING.rows(*session, user_id, user_id, *start, limit + 1), limit)


class Membership(BaseModel):
    chat = ForeignKeyField(Chat, backref="memberships", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    joined_at = UTCDateTimeField(default=utcnow)
    # The newest message the member marked read or sent; it only moves forward.
    last_read_id = IntegerField(null=True)
    # Whether the member joined by themselves (created the chat, or accepted an invitation), not added by another:
    # only such a chat makes its members the user's contacts (accounts/consent.py).
    joined_by_self = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    # The member's alerts for the chat (conversations/settings.py): "all", "mentions" or "none", and a mute.
    notify = CharField(max_length=8, default="all", constraints=[SQL("DEFAULT 'all'")])
    muted_until = UTCDateTimeField(null=True)
    # A direct chat the member left: hidden from their list until a message newer than this id arrives.
    hidden_after = IntegerField(null=True)

    class Meta:
        indexes = ((("user", "chat"), True),)

    @classmethod
    def exists(cls, chat_id: int, user_id: int) -> bool:
        return _MEMBERSHIP.first(user_id, chat_id) is not None

    @classmethod
    def is_contact(cls, user_id: int, other_id: int) -> bool:
        """Whether `other_id` is a member of a chat that `user_id` joined by themselves: one of the user's contacts."""
        theirs = cls.alias()
        together = theirs.select(theirs.id).where(theirs.chat == cls.chat, theirs.user == other_id)
        return cls.select(cls.id).where(cls.user == user_id, cls.joined_by_self, fn.EXISTS(together)).exists()

    @classmethod
    def add(cls, chat_id: int, user_id: int, name: str, adder_id: int) -> bool:
        """Add a member while the adder still is one and the chat is not being deleted, checked inside the write;
        whether it was added. On PostgreSQL the chat row is locked FOR SHARE, so a leave in progress finishes first."""
        with db.atomic():
            lock_chats(Chat.id == chat_id, "FOR SHARE")
            adder = cls.select(cls.id).where(cls.chat == chat_id, cls.user == adder_id)
            added = cls.join(chat_id, user_id, name, False, fn.EXISTS(adder))
        return added

    @classmethod
    def join(cls, chat_id: int, user_id: int, name: str, by_self: bool, allowed) -> bool:
        """Insert the membership if the chat is not being deleted and `allowed` holds, and record member.added."""
        deleted = DeletedChat.select(DeletedChat.chat).where(DeletedChat.chat == chat_id)
        source = Chat.select(Chat.id, Value(user_id), Value(utcnow()), Value(by_self)).where(
            Chat.id == chat_id, allowed, ~fn.EXISTS(deleted)
        )
        columns = [cls.chat, cls.user, cls.joined_at, cls.joined_by_self]
        added = cls.insert_from(source, columns).as_rowcount().execute() > 0
        if added:
            Event.record(MEMBER_ADDED, chat_id, {"chat_id": chat_id, "user": {"id": user_id, "name": name}}, user_id)
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
            User.select(User.id, User.name, User.avatar_upload_id)
            .join(cls, on=(cls.user == User.id))
            .where(cls.chat == chat_id)
            .order_by(cls.id)
            .tuples()
        )
        return [{"id": user_id, "name": name, "avatar_url": avatar_url(avatar)} for user_id, name, avatar in rows]

    @classmethod
    def leave(cls, chat_id: int, user_id: int) -> None:
        """Leave a chat; the last member out deletes it: gone at once, its messages purged in batches after."""
        with db.atomic():
            lock_chats(Chat.id == chat_id)
            left = cls.delete().where(cls.chat == chat_id, cls.user == user_id).execute()
            members = Membership.select(Membership.id).where(Membership.chat == Chat.id)
            emptied = DeletedChat.mark(Chat.select(Chat.id).where(Chat.id == chat_id, ~fn.EXISTS(members)))
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
        lock_chats(Chat.id.in_(chats))
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
    # The files it carries, as the API shows them (a JSON list; null for none): uploads never change, so each
    # read takes them from the row, not from a join (Attachment holds the references).
    attachments = TextField(null=True)
    # The message it answers, and that message's sender (plain columns: the answer outlives the original).
    reply_to_id = IntegerField(null=True)
    reply_to_sender_id = IntegerField(null=True)
    # The root of the thread it is a reply in; null in the chat's history (conversations/threads.py).
    thread_root_id = IntegerField(null=True)
    # Kept on the row, as the API shows them, so that a history page reads no other table for them: a root's thread
    # summary (JSON; null while it has no replies), the reactions' counts ([[emoji, count], ...] in order of first
    # use; null for none: Reaction holds who), and the members its @names reached (a JSON list; null for none).
    thread = TextField(null=True)
    reactions = TextField(null=True)
    mentions = TextField(null=True)
    mentions_all = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])

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
    def send(
        cls, chat_id: int, sender_id: int, content: str, attachments: str | None = None, post: Post = PLAIN
    ) -> int | None:
        """Store a message if the sender is a member of the chat, checked in the same write, and move the sender's
        read marker to it; its id, else None. `attachments` is the JSON list of its files (files/uploads.py, which
        calls this inside its transaction and records the Attachment rows); `post` what else it carries
        (conversations/posting.py, which does the rest a reply in a thread or a mention asks for).

        A chat's messages are timed in id order. SQLite's write transactions run one at a time, so the time is
        taken once this one has begun; on PostgreSQL sends to the chat take turns (_send_message) and the
        database's clock times the row as it is inserted.
        """
        if isinstance(db.obj, PostgresqlDatabase):  # one round trip: one transaction, or a part of the caller's
            member, marker, extra = (sender_id, chat_id), (sender_id, chat_id), post.values()
            reply = None if post.reply_to_id is None else json.dumps(post.reply_json(), ensure_ascii=False)
            row = _SEND_MESSAGE.first(
                chat_id, *member, chat_id, sender_id, content, attachments, *extra, *member, *marker, reply
            )
            if row is None:
                return None
            _recorded.pending = True
            return row[0]
        with db.atomic():
            row = _SEND_MESSAGE.first(
                chat_id, sender_id, content, utcnow(), attachments, *post.values(), sender_id, chat_id
            )
            if row is None:
                return None
            message_id, time = row
            _MOVE_READ_MARKER.execute(message_id, sender_id, chat_id, message_id)
            message = new_message_json(message_id, content, sender_id, time, attachments, post)
            Event.record(MESSAGE_CREATED, chat_id, message_created(chat_id, message))
        return message_id

    @classmethod
    def one(cls, chat_id: int, message_id: int, reader_id: int | None = None) -> dict | None:
        """A message of the chat, as its history shows it to the reader; None if the chat has no message of that id."""
        row = _MESSAGE.first(message_id, chat_id)
        return None if row is None else message_json(row, cls.reactions_of(reader_id, [row] if row[12] else []))

    @classmethod
    def read(cls, ids, reader_id: int | None = None, **where) -> dict[int, dict]:
        """Messages by id, as the API shows them to `reader_id` (None: as an event shows them to everyone)."""
        original = cls.alias("original")
        query = cls.select(*message_columns(Message=cls, original=original, stored_times=False))
        rows = list(replied(query, Message=cls, original=original).where(cls.id.in_(list(ids))).tuples())
        mine = cls.reactions_of(reader_id, [row for row in rows if row[12]])
        return {row[0]: message_json(row, mine) for row in rows}

    @staticmethod
    def reactions_of(reader_id: int | None, rows) -> frozenset:
        """The (message id, emoji) of the reader's own reactions to the messages of these rows, in one query; none
        when no row has reactions."""
        if reader_id is None or not rows:
            return frozenset()
        ids = [row[0] for row in rows]
        mine = Reaction.select(Reaction.message, Reaction.emoji).where(
            Reaction.message.in_(ids), Reaction.user_id == reader_id
        )
        return frozenset(mine.tuples())

    @classmethod
    def edit(cls, chat_id: int, message_id: int, sender_id: int, content: str, remention=None) -> dict | None:
        """Give the sender's message new text, keeping the text it had (MessageVersion) and telling the members;
        the message as it is now, or None if the chat has no message of that id from that sender, or the sender
        is no longer a member (checked inside the write, as a send does).

        New text that is the text already there changes nothing. `remention(message_id)`, called inside the write,
        gives the columns that say whom the new text mentions (conversations/mentions.py).
        """
        with db.atomic():
            member = Membership.select(Membership.id).where(Membership.chat == chat_id, Membership.user == sender_id)
            query = cls.select(cls.content).where(
                cls.id == message_id, cls.chat == chat_id, cls.sender_id == sender_id, fn.EXISTS(member)
            )
            if isinstance(db.obj, PostgresqlDatabase):  # two edits of one message take turns
                query = query.for_update()
            before = query.scalar()
            if before is None:
                return None
            if content != before:
                edited_at = utcnow()
                MessageVersion.insert(message=message_id, content=before, replaced_at=edited_at).execute()
                changes = {cls.content: content, cls.edited_at: edited_at}
                if remention is not None:
                    changes.update(remention(message_id))
                cls.update(changes).where(cls.id == message_id).execute()
            if content != before:
                message = cls.read([message_id])[message_id]  # as every member's stream shows it
                Event.record(MESSAGE_EDITED, chat_id, {"chat_id": chat_id, "message": message})
        return cls.one(chat_id, message_id, sender_id)

    @classmethod
    def search(
        cls,
        reader_id: int,
        terms: list[search.Term],
        chat_id: int | None,
        limit: int,
        before: int | None,
        budget_seconds: float = 2.0,
    ) -> list[dict]:
        """The newest `limit` messages below `before` that match every term, in the chats the reader is a member
        of (only `chat_id`'s, when given), each with its chat id; Unavailable after `budget_seconds`.

        When the reader's chats hold fewer than search.CANDIDATE_LIMIT messages below `before`, only those are
        read and matched, so the cost follows the reader's chats, not the server's; otherwise the full-text index
        is searched first (storage/queries.py, search)."""
        plans = _SEARCH if chat_id is None else _SEARCH_ONE_CHAT
        below = MAX_ID if before is None else before
        rows = search.run(plans, _SEARCH_CANDIDATES, reader_id, terms, chat_id, limit, below, budget_seconds)
        found = cls.read([row[0] for row in rows], reader_id)
        return [{"chat_id": row[1], **found[row[0]]} for row in rows if row[0] in found]

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
        bounds = (reader_id, *session, reader_id, chat_id, lowest, highest, reader_id, chat_id, limit)
        if after is not None and before is None:
            rows = _MESSAGES_OLDEST_FIRST.rows(*bounds)
        else:
            rows = _MESSAGES_NEWEST_FIRST.rows(*bounds)
            rows.reverse()
        mine = frozenset((row[0], emoji) for row in rows if row[15] for emoji in row[15].split(REACTION_SEPARATOR))
        messages = [message_json(row, mine) for row in rows]
        return messages, ((rows[0][-2], rows[0][-1]) if rows else None)


# A thread's replies by id, for its page and summary. Partial, over thread replies only: a history page asks for
# `thread_root_id IS NULL`, which this index cannot serve, so the planner keeps to (chat, id) there and never walks
# every chat's messages (storage/migrations.py, conversations, creates the same index).
_THREAD_REPLIES = Message.thread_root_id.is_null(False)
Message.add_index(
    Message.index(Message.thread_root_id, Message.id, name="message_thread_root_id_id", where=_THREAD_REPLIES)
)


class Reaction(BaseModel):
    """One person's reaction with one emoji to a message (conversations/reactions.py); Message.reactions counts them."""

    id = NeverReusedIdField()
    message = ForeignKeyField(Message, backref="reacted", on_delete="CASCADE", index=False)
    user_id = IntegerField()
    emoji = CharField(max_length=64)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("message", "user_id", "emoji"), True), (("message", "emoji", "id"), False))


class Mention(BaseModel):
    """A message of a chat's history that mentions a member (user_id 0: `@all`), for the chat list's mention_count."""

    message = ForeignKeyField(Message, backref="mentioned", on_delete="CASCADE")
    chat_id = IntegerField()
    user_id = IntegerField()
    sender_id = IntegerField()

    class Meta:
        indexes = ((("chat_id", "user_id", "message"), False),)


class ThreadFollow(BaseModel):
    """A user following a thread (conversations/threads.py), with their read marker in it."""

    root = ForeignKeyField(Message, backref="followers", on_delete="CASCADE")
    chat_id = IntegerField()
    user_id = IntegerField()
    following = BooleanField(default=True)
    last_read_id = IntegerField(null=True)

    class Meta:
        indexes = ((("user_id", "root"), True),)


class DirectChat(BaseModel):
    """The one direct chat of two people (conversations/direct.py): `low` and `high` are their ids in order, equal
    for a chat with oneself. Plain columns, as Message.sender_id: the chat outlives either account."""

    chat = ForeignKeyField(Chat, primary_key=True, backref="direct", on_delete="CASCADE")
    low = IntegerField()
    high = IntegerField()

    class Meta:
        table_name = "direct_chat"
        indexes = ((("low", "high"), True),)


class Pin(BaseModel):
    """A pinned message of a chat (conversations/pins.py)."""

    id = NeverReusedIdField()
    chat = ForeignKeyField(Chat, backref="pins", on_delete="CASCADE")
    message = ForeignKeyField(Message, backref="pinned", on_delete="CASCADE", unique=True)
    pinned_by = IntegerField()
    pinned_at = UTCDateTimeField(default=utcnow)


class PresenceProcess(BaseModel):
    """A server process that holds event streams, alive while `seen_at` (seconds since the epoch) is recent; its
    streams stop counting once it falls silent (streams/presence.py)."""

    id = NeverReusedIdField()
    name = CharField(max_length=255)
    seen_at = DoubleField()

    class Meta:
        table_name = "presence_process"


class PresenceStream(BaseModel):
    """A session with at least one event stream open on a process: what makes its user online, or idle when every
    such session said so."""

    process_id = IntegerField()
    session_id = IntegerField(index=True)
    user_id = IntegerField(index=True)
    idle = BooleanField(default=False)

    class Meta:
        table_name = "presence_stream"
        primary_key = CompositeKey("process_id", "session_id")


class UserPresence(BaseModel):
    """A user's presence as last published to the people who share a chat with them, and their status text.
    `offline_since` marks a user whose last stream closed: they are published offline once the grace has passed."""

    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
    state = CharField(max_length=8, default="offline")
    status_text = CharField(max_length=80, default="")
    offline_since = DoubleField(null=True)

    class Meta:
        table_name = "user_presence"


class Deployment(BaseModel):
    """Facts about this deployment, one row each: `channel`, the random name of its Redis channel for typing and
    presence (streams/pubsub.py), so that deployments sharing one Redis never hear each other."""

    key = CharField(max_length=64, primary_key=True)
    value = CharField(max_length=255)

    @classmethod
    def value_of(cls, key: str) -> str | None:
        row = cls.select(cls.value).where(cls.key == key).tuples().first()
        return row[0] if row else None


class Ephemeral(BaseModel):
    """A typing or presence message on its way to other SQLite worker processes (streams/pubsub.py): never read
    by a stream that opens after it, and deleted within a minute."""

    id = NeverReusedIdField()
    process = CharField(max_length=32)
    data = TextField()
    at = DoubleField()


class MessageVersion(BaseModel):
    """A text a message had before an edit, kept as Zulip keeps them (no endpoint reads them yet); it goes when its
    message does."""

    message = ForeignKeyField(Message, backref="versions", on_delete="CASCADE", index=False)
    content = TextField()
    replaced_at = UTCDateTimeField()

    class Meta:
        indexes = ((("message", "id"), False),)


class Blob(BaseModel):
    """Bytes stored once, however many uploads have them, under their SHA-256 (files/stores.py keeps them): the row
    exists once they are all stored, and goes, with them, when no upload has them any more."""

    sha256 = CharField(max_length=64, primary_key=True)
    size = BigIntegerField()
    created_at = UTCDateTimeField(default=utcnow)


class BlobChunk(BaseModel):
    """With `--uploads database`: a blob's bytes, a piece each (files/stores.py, DatabaseStore)."""

    sha256 = CharField(max_length=64)
    seq = IntegerField()
    data = BlobField()
    written_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "blob_chunk"
        primary_key = CompositeKey("sha256", "seq")


class Upload(BaseModel):
    """A file a user uploaded (files/uploads.py): its bytes are the blob `sha256`, an image's thumbnail the blob
    `thumbnail_sha256`. It goes when nothing uses it: `--upload-ttl` after its upload if nothing ever did, else when
    its last message or avatar goes."""

    id = NeverReusedIdField()
    # A plain column, as Message.sender_id: a file in a chat stays when its uploader deletes their account.
    owner_id = IntegerField()
    name = CharField(max_length=255)
    content_type = CharField(max_length=127)
    size = BigIntegerField()
    sha256 = CharField(max_length=64, index=True)
    width = IntegerField(null=True)
    height = IntegerField(null=True)
    thumbnail_sha256 = CharField(max_length=64, null=True, index=True)
    created_at = UTCDateTimeField(default=utcnow)
    # When a message or an avatar last took it up; null while nothing ever did.
    used_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("owner_id", "id"), False), (("used_at", "created_at"), False))


class Attachment(BaseModel):
    """An upload a message carries; it goes with the message (a delete, or its chat's purge)."""

    message = ForeignKeyField(Message, backref="attached", on_delete="CASCADE", index=False)
    upload = ForeignKeyField(Upload, backref="attachments", on_delete="CASCADE")
    position = IntegerField()

    class Meta:
        indexes = ((("message", "position"), True),)


def avatar_url(upload_id: int | None) -> str | None:
    """The URL of an avatar: its upload's thumbnail."""
    return None if upload_id is None else f"/api/uploads/{upload_id}/thumbnail"


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


class Invitation(BaseModel):
    """An invitation to a chat for someone who may not be added at once (accounts/consent.py): pending until they
    accept (it becomes a membership and goes) or decline (it stays, declined, to refuse a re-invitation a while)."""

    id = NeverReusedIdField()
    chat = ForeignKeyField(Chat, backref="invitations", on_delete="CASCADE", index=False)
    user = ForeignKeyField(User, backref="invitations", on_delete="CASCADE", index=False)
    inviter = ForeignKeyField(User, backref="invitations_sent", on_delete="CASCADE")
    created_at = UTCDateTimeField(default=utcnow)
    declined_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("user", "chat"), True), (("chat",), False))


# The event types streams deliver (openapi/chat.yaml, GET /api/events), and one they never see: a session that
# ended (logout), or all of a user's (account deleted), which ends its streams.
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"
CHAT_RENAMED = "chat.renamed"
MEMBER_ADDED = "member.added"
MEMBER_LEFT = "member.left"
CHAT_READ = "chat.read"
CHAT_INVITED = "chat.invited"
USER_UPDATED = "user.updated"
REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"
THREAD_UPDATED = "thread.updated"
MENTION = "mention"  # recorded with no chat, for the mentioned user only, as chat.invited is
MESSAGE_PINNED = "message.pinned"
MESSAGE_UNPINNED = "message.unpinned"
SESSION_ENDED = "session.ended"


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
            # In the COMMIT's round trip (storage/roundtrips.py): take the event lock, insert, notify the newest id.
            if len(rows) == 1:  # every send: the statement is built once
                values = event_values(rows[0])
                database.at_commit(_RECORD_EVENT_AND_NOTIFY.sql(database, values), values)
            else:
                for query in queries.record_and_notify(cls.insert_many(rows), Event=Event):
                    database.at_commit(*database.get_sql_context().sql(query).query())
        elif len(rows) == 1:
            _RECORD_EVENT.execute(*event_values(rows[0]))
        else:
            cls.insert_many(rows).execute()
        _recorded.pending = True

    @classmethod
    def user_updated(cls, user_id: int, name: str, avatar: str | None) -> None:
        """Tell the members of every chat the user is in that their name or avatar changed."""
        user = {"id": user_id, "name": name, "avatar_url": avatar}
        chats = Membership.select(Membership.chat).where(Membership.user == user_id).order_by(Membership.chat)
        events = [
            {"kind": USER_UPDATED, "chat_id": chat, "user_id": user_id, "data": {"chat_id": chat, "user": user}}
            for (chat,) in chats.tuples()
        ]
        cls.record_many(events)

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
    def replay(cls, starts: dict[int, int], upto: int, limit: int, user_id: int, after: int) -> list[tuple]:
        """The oldest `limit` events up to `upto` of the chats in `starts`, each chat's after the id given for it,
        and the user's own events of no chat (an invitation) after `after` (storage/queries.py, replay)."""
        return queries.replay(starts, upto, limit, user_id, after, ROW_FIELDS, SESSION_ENDED, Event=cls)

    @classmethod
    def memberships_changed(cls, user_id: int, after: int, upto: int) -> list[tuple[int, int, str]]:
        """(event id, chat, kind) of the user's joins and leaves in (after, upto], in order."""
        return list(
            cls.select(cls.id, cls.chat_id, cls.kind)
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
        in_batches(lambda: purges.prune_step(older_than, Event=Event, PrunedEvents=PrunedEvents))


class PrunedEvents(BaseModel):
    """One row: the newest event id that pruning deleted."""

    id = IntegerField(primary_key=True)
    through = BigIntegerField()


class IdempotencyKey(BaseModel):
    """The response to a request sent with an Idempotency-Key, kept a day so a retry gets it again
    (edge/idempotency.py).

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


def lock_chats(where, mode: str = "FOR NO KEY UPDATE") -> None:
    """On PostgreSQL, lock the chats whose memberships this transaction changes, in id order.

    Otherwise two members leaving at once could each still see the other and neither mark the chat deleted.
    SQLite's IMMEDIATE transactions already run one at a time. NO KEY UPDATE lets messages still be inserted;
    an added member takes FOR SHARE, which waits for a leave in progress.
    """
    if isinstance(db.obj, PostgresqlDatabase):
        Chat.select(Chat.id).where(where).order_by(Chat.id).for_update(mode).execute()


_PURGE_TABLES = {"Chat": Chat, "DeletedChat": DeletedChat, "Membership": Membership, "Message": Message}

# The queries of the hot paths (storage/queries.py says what each takes), over these tables.
_SESSION_USER = Statement(lambda: queries.session_user(Session=Session), prepared=True)
_MEMBERSHIP = Statement(lambda: queries.membership(Membership=Membership), prepared=True)
_CHAT_LISTING = Statement(
    lambda: queries.chat_listing(
        Chat=Chat,
        DirectChat=DirectChat,
        Membership=Membership,
        Mention=Mention,
        Message=Message,
        Session=Session,
        User=User,
    ),
    prepared=True,
)
_MESSAGE = Statement(lambda: queries.message(Message=Message))
_SEARCH_TABLES = {"Membership": Membership, "Message": Message, "MessageSearch": MessageSearch}
_SEARCH = {
    plan: Statement(lambda plan=plan: queries.search(plan, False, **_SEARCH_TABLES))
    for plan in ("count", "index", "scan", "fill")
}
_SEARCH_ONE_CHAT = {
    plan: Statement(lambda plan=plan: queries.search(plan, True, **_SEARCH_TABLES))
    for plan in ("count", "index", "scan", "fill")
}
_SEARCH_CANDIDATES = Statement(lambda: queries.search("match", False, **_SEARCH_TABLES))
_PAGE_TABLES = {"Membership": Membership, "Message": Message, "Reaction": Reaction, "Session": Session}
_MESSAGES_NEWEST_FIRST = Statement(lambda: queries.messages_between(Message.id.desc(), **_PAGE_TABLES), prepared=True)
_MESSAGES_OLDEST_FIRST = Statement(lambda: queries.messages_between(Message.id.asc(), **_PAGE_TABLES), prepared=True)
_SEND_MESSAGE = Statement(lambda: queries.send_message(Chat=Chat, Event=Event, Membership=Membership, Message=Message))
_MOVE_READ_MARKER = Statement(lambda: queries.move_read_marker(Membership=Membership))
_RECORD_EVENT = Statement(lambda: queries.record_event(Event=Event))
_RECORD_EVENT_AND_NOTIFY = Statement(lambda: queries.record_and_notify(queries.record_event(Event=Event), Event=Event))
_EVENTS_AFTER = Statement(lambda: queries.events_after(ROW_FIELDS, Event=Event), prepared=True)

MODELS = [
    User,
    Session,
    Chat,
    Membership,
    Message,
    MessageVersion,
    Reaction,
    Mention,
    ThreadFollow,
    DirectChat,
    Pin,
    Blob,
    BlobChunk,
    Upload,
    Attachment,
    DeletedChat,
    Invitation,
    Event,
    PrunedEvents,
    IdempotencyKey,
    PresenceProcess,
    PresenceStream,
    UserPresence,
    Deployment,
    Ephemeral,
]
