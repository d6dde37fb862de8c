"""Versioned schema migrations: a database records the ones it has run, and the rest run under a lock at start or
through `chat-server migrate`, so that several workers or hosts starting at once take turns.

Each migration is a function in STEPS; its position is its version and its name is its function's name. To change
the schema, append a function with a docstring that says what it changes and why; never edit one that has shipped.
A migration describes the tables as they were at its version with models of its own (frozen: models.py moves on)
and only adds what is missing. That makes every step idempotent, so a database made by a version from before this
table (by create_tables and models.add_missing_columns) is brought up to date by running all of them.
"""

import contextlib
import datetime
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from peewee import (
    SQL,
    AutoField,
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
    chunked,
    fn,
)
from playhouse.migrate import SchemaMigrator, make_index_name, migrate

from ..core import names

log = logging.getLogger("chat")
TABLE = "schema_migration"
LOCK_KEY = 0x63686D67  # "chmg": PostgreSQL's advisory lock for migrations


class SchemaBehind(RuntimeError):
    """The database lacks migrations this server needs, and it was told not to run them."""


class Schema:
    """What a migration works with: the database, and steps that do nothing when what they add is there."""

    def __init__(self, database):
        self.database = database
        self.migrator = SchemaMigrator.from_database(database)

    def create_tables(self, *tables: type[Model]) -> None:
        """Create the tables that are missing, and whatever indexes of theirs are missing."""
        self.database.bind(tables)
        self.database.create_tables(tables, safe=True)

    def add_column(self, table: str, column: str, field, allow_not_null: bool = False) -> None:
        """Add the column if it is missing. allow_not_null adds a NOT NULL column in one statement, which needs a
        default in its DDL; otherwise a NOT NULL column is added nullable, filled and then constrained (on SQLite
        by rebuilding the table)."""
        if column not in {existing.name for existing in self.database.get_columns(table)}:
            migrate(self.migrator.add_column(table, column, field, allow_not_null=allow_not_null))

    def add_index(self, table: str, columns: tuple[str, ...], unique: bool = False) -> None:
        """Add the index under the name Peewee gives a model's index on these columns."""
        if make_index_name(table, columns) not in {index.name for index in self.database.get_indexes(table)}:
            migrate(self.migrator.add_index(table, columns, unique))


class NeverReusedId(AutoField):
    """A frozen copy of models.NeverReusedIdField: SQLite needs AUTOINCREMENT never to hand an id out twice."""

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database, SqliteDatabase):
            return NodeList((node, SQL("AUTOINCREMENT")))
        return node


class NeverReusedBigId(NeverReusedId):
    field_type = BigAutoField.field_type


def initial_schema(schema: Schema) -> None:
    """Users, sessions, chats, memberships, messages and deleted chats, as they were before the event log."""

    class User(Model):
        id = NeverReusedId()
        name = CharField(max_length=64, unique=True)
        email = CharField(max_length=254)
        password_hash = CharField(max_length=255)

        class Meta:
            table_name = "user"

    class Session(Model):
        user = ForeignKeyField(User, on_delete="CASCADE")
        token_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "session"

    class Chat(Model):
        id = NeverReusedId()
        title = CharField(max_length=200)
        created_at = DateTimeField()

        class Meta:
            table_name = "chat"

    class Membership(Model):
        chat = ForeignKeyField(Chat, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        joined_at = DateTimeField()

        class Meta:
            table_name = "membership"
            indexes = ((("user", "chat"), True),)

    class Message(Model):
        id = NeverReusedId()
        chat = ForeignKeyField(Chat, on_delete="CASCADE", index=False)
        sender_id = IntegerField()
        content = TextField()
        time = DateTimeField()

        class Meta:
            table_name = "message"
            indexes = ((("chat", "id"), False),)

    class DeletedChat(Model):
        chat = ForeignKeyField(Chat, primary_key=True, on_delete="CASCADE")

        class Meta:
            table_name = "deletedchat"

    schema.create_tables(User, Session, Chat, Membership, Message, DeletedChat)


def events_and_read_markers(schema: Schema) -> None:
    """The event log that streams read (with the newest id pruning deleted), and each member's read marker."""

    class Event(Model):
        id = NeverReusedBigId()
        kind = CharField(max_length=32)
        chat_id = IntegerField(null=True)
        user_id = IntegerField(null=True)
        session_id = IntegerField(null=True)
        data = TextField()
        time = DateTimeField()

        class Meta:
            table_name = "event"
            indexes = ((("chat_id", "id"), False), (("user_id", "id"), False))

    class PrunedEvents(Model):
        id = IntegerField(primary_key=True)
        through = BigIntegerField()

        class Meta:
            table_name = "prunedevents"

    schema.create_tables(Event, PrunedEvents)
    schema.add_column("membership", "last_read_id", IntegerField(null=True))


def accounts_and_idempotency_keys(schema: Schema) -> None:
    """Look-alike names are one name (a unique key, filled in for older accounts first), sessions time out when
    idle, and requests with an Idempotency-Key keep their responses."""
    # names.KEY_LENGTH when this shipped: a key is up to 18 times the 64 characters of its name.
    schema.add_column("user", "name_key", CharField(max_length=64 * 18, null=True))
    key_legacy_names(schema.database)
    schema.add_index("user", ("name_key",), unique=True)
    schema.add_column("session", "last_seen_at", DateTimeField(null=True))

    class IdempotencyKey(Model):
        user_id = IntegerField()
        key = CharField(max_length=128)
        request_hash = CharField(max_length=64)
        status = IntegerField(null=True)
        body = TextField(null=True)
        location = TextField(null=True)
        created_at = DateTimeField()

        class Meta:
            table_name = "idempotencykey"
            indexes = ((("user_id", "key"), True), (("created_at",), False))

    schema.create_tables(IdempotencyKey)


def key_legacy_names(database) -> None:
    """Key the names of users from before name keys, oldest account first.

    An account whose name looks like an older one's keeps no key: it still logs in by its exact name, and the
    warning names it so that someone can rename or delete one of the two (docs/configuration.md, "Names").
    """

    class User(Model):
        id = AutoField()
        name = CharField()
        name_key = CharField(null=True)

        class Meta:
            table_name = "user"

    database.bind([User])
    pending = User.select(User.id, User.name).where(User.name_key.is_null()).order_by(User.id)
    clashes = []
    for batch in chunked(list(pending), 500):
        keys = {user.id: names.lookup_key(user.name) for user in batch}
        holders = dict(User.select(User.name_key, User.id).where(User.name_key.in_(set(keys.values()))).tuples())
        keyed = []
        for user in batch:
            key = keys[user.id]
            if key in holders:
                clashes.append(f"{user.id} looks like {holders[key]}")
            elif key is not None:
                holders[key] = user.id
                user.name_key = key
                keyed.append(user)
        if keyed:
            User.bulk_update(keyed, fields=[User.name_key])
    if clashes:
        log.warning("user names that look like older ones (docs/configuration.md, Names): %s", ", ".join(clashes))


def edits_and_search(schema: Schema) -> None:
    """Messages can be edited (`edited_at`), keeping the texts they had before (messageversion, deleted with their
    message), and searched: the full-text index of every message, existing ones included (message_search). Events
    of sent messages gain the message's `edited_at`, null."""
    schema.add_column("message", "edited_at", DateTimeField(null=True))

    class Message(Model):
        id = AutoField()

        class Meta:
            table_name = "message"

    class MessageVersion(Model):
        message = ForeignKeyField(Message, on_delete="CASCADE", index=False)
        content = TextField()
        replaced_at = DateTimeField()

        class Meta:
            table_name = "messageversion"
            indexes = ((("message", "id"), False),)

    schema.create_tables(MessageVersion)
    message_search(schema.database)
    if isinstance(schema.database, SqliteDatabase):
        set_null = "json_set(data, '$.message.edited_at', json('null'))"
    else:
        set_null = "jsonb_set(data::jsonb, '{message,edited_at}', 'null')::text"
    schema.database.execute_sql(f"UPDATE event SET data = {set_null} WHERE kind = 'message.created'")


def consent_to_be_added(schema: Schema) -> None:
    """Adding someone who has not said they may be added at once invites them instead (invitation); each user says
    who may add them at once (who_can_add_me, null: the server's default); and a membership records whether its
    member joined by themselves, since only such chats make contacts. Of the memberships there are, the chat's
    creator's is marked so: the chat's first membership, made as the chat was; every other member was added."""

    class User(Model):
        id = NeverReusedId()

        class Meta:
            table_name = "user"

    class Chat(Model):
        id = NeverReusedId()
        created_at = DateTimeField()

        class Meta:
            table_name = "chat"

    class Membership(Model):
        chat = ForeignKeyField(Chat, on_delete="CASCADE")
        joined_at = DateTimeField()
        joined_by_self = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])

        class Meta:
            table_name = "membership"

    class Invitation(Model):
        id = NeverReusedId()
        chat = ForeignKeyField(Chat, on_delete="CASCADE", index=False)
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        inviter = ForeignKeyField(User, backref="sent", on_delete="CASCADE")
        created_at = DateTimeField()
        declined_at = DateTimeField(null=True)

        class Meta:
            table_name = "invitation"
            indexes = ((("user", "chat"), True), (("chat",), False))

    schema.add_column("user", "who_can_add_me", CharField(max_length=16, null=True))
    if "joined_by_self" not in {column.name for column in schema.database.get_columns("membership")}:
        joined_by_self = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
        schema.add_column("membership", "joined_by_self", joined_by_self, allow_not_null=True)
        mark_creators(schema.database, Chat, Membership)
    schema.create_tables(Invitation)


def files(schema: Schema) -> None:
    """Files: uploads (upload), the bytes they share (blob; blob_chunk holds them with `--uploads database`), which
    messages carry which (attachment, and message.attachments, the list as the API shows it), and avatars
    (user.avatar_upload_id)."""

    class Message(Model):
        id = NeverReusedId()

        class Meta:
            table_name = "message"

    class Blob(Model):
        sha256 = CharField(max_length=64, primary_key=True)
        size = BigIntegerField()
        created_at = DateTimeField()

        class Meta:
            table_name = "blob"

    class BlobChunk(Model):
        sha256 = CharField(max_length=64)
        seq = IntegerField()
        data = BlobField()
        written_at = DateTimeField()

        class Meta:
            table_name = "blob_chunk"
            primary_key = CompositeKey("sha256", "seq")

    class Upload(Model):
        id = NeverReusedId()
        owner_id = IntegerField()
        name = CharField(max_length=255)
        content_type = CharField(max_length=127)
        size = BigIntegerField()
        sha256 = CharField(max_length=64, index=True)
        width = IntegerField(null=True)
        height = IntegerField(null=True)
        thumbnail_sha256 = CharField(max_length=64, null=True, index=True)
        created_at = DateTimeField()
        used_at = DateTimeField(null=True)

        class Meta:
            table_name = "upload"
            indexes = ((("owner_id", "id"), False), (("used_at", "created_at"), False))

    class Attachment(Model):
        message = ForeignKeyField(Message, on_delete="CASCADE", index=False)
        upload = ForeignKeyField(Upload, on_delete="CASCADE")
        position = IntegerField()

        class Meta:
            table_name = "attachment"
            indexes = ((("message", "position"), True),)

    schema.create_tables(Blob, BlobChunk, Upload, Attachment)
    schema.add_column("message", "attachments", TextField(null=True))
    # The messages in events recorded before this version read as the Message schema now says: no files.
    if isinstance(schema.database, SqliteDatabase):
        add_none = "json_set(data, '$.message.attachments', json('[]'))"
        missing = "json_extract(data, '$.message.attachments') IS NULL"
    else:
        add_none = "jsonb_set(data::jsonb, '{message,attachments}', '[]')::text"
        missing = "data::jsonb #> '{message,attachments}' IS NULL"
    schema.database.execute_sql(
        f"UPDATE event SET data = {add_none} WHERE kind IN ('message.created', 'message.edited') AND {missing}"
    )
    schema.add_column("user", "avatar_upload_id", IntegerField(null=True))
    schema.add_index("user", ("avatar_upload_id",))


def mark_creators(database, Chat, Membership) -> None:
    """Mark each chat's first membership as joined by self when it was made within a second of the chat (its
    creator's; a creator who left leaves the next member unmarked)."""
    database.bind([Chat, Membership])
    first = Membership.select(fn.MIN(Membership.id)).group_by(Membership.chat)
    rows = (
        Membership.select(Membership.id, Membership.joined_at, Chat.created_at)
        .join(Chat, on=(Chat.id == Membership.chat))
        .where(Membership.id.in_(first))
        .tuples()
    )
    creators = [
        membership
        for membership, joined_at, created_at in rows.iterator()
        if abs(_as_datetime(joined_at) - _as_datetime(created_at)) <= datetime.timedelta(seconds=1)
    ]
    for batch in chunked(creators, 500):
        Membership.update(joined_by_self=True).where(Membership.id.in_(batch)).execute()


def _as_datetime(value) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value


# SQLite: an FTS5 index with its text in the message table ("external content"), kept in step by triggers, so that
# every write of a message (send, edit, delete, a chat's purge) updates it in its own transaction. unicode61 folds
# case and, with remove_diacritics 2, accents.
_SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5("
    "content, content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_search_insert AFTER INSERT ON message BEGIN "
    "INSERT INTO message_search (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON message BEGIN "
    "INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF content ON message BEGIN "
    "INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO message_search (rowid, content) VALUES (new.id, new.content); END",
]
# PostgreSQL: a GIN index on each message's tsvector in the `simple` configuration (no language assumed).
_POSTGRES_SEARCH = "CREATE INDEX IF NOT EXISTS message_search ON message USING GIN (to_tsvector('simple', content))"


def message_search(database) -> None:
    """The full-text index of messages, and its content: for every message there is. Made by edits_and_search, and
    by models.Message.create_table for a database made without migrations."""
    if not isinstance(database, SqliteDatabase):
        database.execute_sql(_POSTGRES_SEARCH)
        return
    new = not database.table_exists("message_search")
    for statement in _SQLITE_SEARCH:
        database.execute_sql(statement)
    if new:
        database.execute_sql("INSERT INTO message_search (message_search) VALUES ('rebuild')")


def drop_message_search(database) -> None:
    """Before the message table is dropped (models.Message.drop_table): SQLite keeps a virtual table that outlives
    the table whose text it indexes; PostgreSQL's index goes with its table."""
    if isinstance(database, SqliteDatabase):
        database.execute_sql("DROP TABLE IF EXISTS message_search")


def conversations(schema: Schema) -> None:
    """Reactions, replies and threads, mentions, direct chats, pins and alert settings: the message columns that
    carry them (kept on the row, as the API shows them), the tables behind them, and the members' settings. Events
    recorded before this version gain the message fields with their empty values."""

    class Chat(Model):
        id = NeverReusedId()

        class Meta:
            table_name = "chat"

    class Message(Model):
        id = NeverReusedId()

        class Meta:
            table_name = "message"

    class Reaction(Model):
        id = NeverReusedId()
        message = ForeignKeyField(Message, on_delete="CASCADE", index=False)
        user_id = IntegerField()
        emoji = CharField(max_length=64)
        created_at = DateTimeField()

        class Meta:
            table_name = "reaction"
            indexes = ((("message", "user_id", "emoji"), True), (("message", "emoji", "id"), False))

    class Mention(Model):
        message = ForeignKeyField(Message, on_delete="CASCADE")
        chat_id = IntegerField()
        user_id = IntegerField()
        sender_id = IntegerField()

        class Meta:
            table_name = "mention"
            indexes = ((("chat_id", "user_id", "message"), False),)

    class ThreadFollow(Model):
        root = ForeignKeyField(Message, on_delete="CASCADE")
        chat_id = IntegerField()
        user_id = IntegerField()
        following = BooleanField(default=True)
        last_read_id = IntegerField(null=True)

        class Meta:
            table_name = "threadfollow"
            indexes = ((("user_id", "root"), True),)

    class DirectChat(Model):
        chat = ForeignKeyField(Chat, primary_key=True, on_delete="CASCADE")
        low = IntegerField()
        high = IntegerField()

        class Meta:
            table_name = "direct_chat"
            indexes = ((("low", "high"), True),)

    class Pin(Model):
        id = NeverReusedId()
        chat = ForeignKeyField(Chat, on_delete="CASCADE")
        message = ForeignKeyField(Message, on_delete="CASCADE", unique=True)
        pinned_by = IntegerField()
        pinned_at = DateTimeField()

        class Meta:
            table_name = "pin"

    for column, field in [
        ("reply_to_id", IntegerField(null=True)),
        ("reply_to_sender_id", IntegerField(null=True)),
        ("thread_root_id", IntegerField(null=True)),
        ("thread", TextField(null=True)),
        ("reactions", TextField(null=True)),
        ("mentions", TextField(null=True)),
    ]:
        schema.add_column("message", column, field)
    flag = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    schema.add_column("message", "mentions_all", flag, allow_not_null=True)
    # Partial: only thread replies, so that a history page (thread_root_id IS NULL) keeps to (chat, id) (models.py).
    schema.database.execute_sql(
        "CREATE INDEX IF NOT EXISTS message_thread_root_id_id ON message (thread_root_id, id)"
        " WHERE thread_root_id IS NOT NULL"
    )
    kind = CharField(max_length=8, default="group", constraints=[SQL("DEFAULT 'group'")])
    schema.add_column("chat", "kind", kind, allow_not_null=True)
    notify = CharField(max_length=8, default="all", constraints=[SQL("DEFAULT 'all'")])
    schema.add_column("membership", "notify", notify, allow_not_null=True)
    schema.add_column("membership", "muted_until", DateTimeField(null=True))
    schema.add_column("membership", "hidden_after", IntegerField(null=True))
    schema.create_tables(Reaction, Mention, ThreadFollow, DirectChat, Pin)
    # The messages in events recorded before this version read as the Message schema now says.
    empty = {"reply_to": "null", "thread_root_id": "null", "thread": "null", "reactions": "[]", "mentions": "[]",
             "mentions_all": "false"}  # fmt: skip
    if isinstance(schema.database, SqliteDatabase):
        paths = ", ".join(f"'$.message.{key}', json('{value}')" for key, value in empty.items())
        add = f"json_insert(data, {paths})"
        missing = "json_type(data, '$.message.reactions') IS NULL"
    else:
        add = "(data::jsonb || jsonb_build_object('message', (data::jsonb -> 'message') || '{}'::jsonb))::text".format(
            "{" + ", ".join(f'"{key}": {value}' for key, value in empty.items()) + "}"
        )
        missing = "data::jsonb #> '{message,reactions}' IS NULL"
    schema.database.execute_sql(
        f"UPDATE event SET data = {add} WHERE kind IN ('message.created', 'message.edited') AND {missing}"
    )


def presence(schema: Schema) -> None:
    """Presence and the ephemeral channel (streams/presence.py, streams/pubsub.py): the processes that hold
    streams, the sessions streaming on each, each user's published presence and status text, and the table that
    carries typing and presence between SQLite worker processes."""

    class User(Model):
        id = NeverReusedId()

        class Meta:
            table_name = "user"

    class PresenceProcess(Model):
        id = NeverReusedId()
        name = CharField(max_length=255)
        seen_at = DoubleField()

        class Meta:
            table_name = "presence_process"

    class PresenceStream(Model):
        process_id = IntegerField()
        session_id = IntegerField(index=True)
        user_id = IntegerField(index=True)
        idle = BooleanField(default=False)

        class Meta:
            table_name = "presence_stream"
            primary_key = CompositeKey("process_id", "session_id")

    class UserPresence(Model):
        user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
        state = CharField(max_length=8, default="offline")
        status_text = CharField(max_length=80, default="")
        offline_since = DoubleField(null=True)

        class Meta:
            table_name = "user_presence"

    class Ephemeral(Model):
        id = NeverReusedId()
        process = CharField(max_length=32)
        data = TextField()
        at = DoubleField()

        class Meta:
            table_name = "ephemeral"

    class Deployment(Model):
        key = CharField(max_length=64, primary_key=True)
        value = CharField(max_length=255)

        class Meta:
            table_name = "deployment"

    schema.create_tables(PresenceProcess, PresenceStream, UserPresence, Deployment, Ephemeral)
    channel = f"chat_ephemeral_{secrets.token_hex(8)}"
    Deployment.insert(key="channel", value=channel).on_conflict_ignore().execute()


STEPS: list[Callable[[Schema], None]] = [
    initial_schema,
    events_and_read_markers,
    accounts_and_idempotency_keys,
    edits_and_search,
    consent_to_be_added,
    files,
    conversations,
    presence,
]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Schema], None]

    def __str__(self) -> str:
        return f"{self.version} {self.name}"


MIGRATIONS = [Migration(version, step.__name__.replace("_", " "), step) for version, step in enumerate(STEPS, 1)]
LATEST = len(MIGRATIONS)


def _history(database) -> type[Model]:
    """The table of migrations run, bound to this database."""

    class AppliedMigration(Model):
        version = IntegerField(primary_key=True)
        name = CharField(max_length=200)
        applied_at = DateTimeField()

        class Meta:
            table_name = TABLE

    database.bind([AppliedMigration])
    return AppliedMigration


def version(database) -> int:
    """The newest migration the database has run; 0 for an empty one, or one from before this table."""
    if not database.table_exists(TABLE):
        return 0
    history = _history(database)
    return history.select(fn.MAX(history.version)).scalar() or 0


@contextlib.contextmanager
def _one_at_a_time(database):
    """A transaction that no other process migrating the same database is inside at the same time."""
    if isinstance(database, SqliteDatabase):
        # BEGIN IMMEDIATE takes SQLite's one write lock; other processes wait for it (busy_timeout).
        with database.atomic(lock_type="IMMEDIATE"):
            yield
        return
    with database.atomic():
        # PostgreSQL's DDL is transactional: the migration and its record commit together, and the lock with them.
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        yield


def upgrade(database, to: int | None = None) -> list[Migration]:
    """Run the migrations the database lacks, up to version `to` (default: all); the ones this call ran.

    Each runs in its own transaction under the lock, after reading the version again: whoever waited for the lock
    finds the work done. An up-to-date database costs two small reads and no lock.
    """
    target = LATEST if to is None else to
    if not 0 <= target <= LATEST:
        raise ValueError(f"no migration {target}: the versions are 1 to {LATEST}")
    applied = []
    with database.connection_context():
        current = version(database)
        if current > LATEST:
            # A newer server migrated it (a rolling upgrade, or a rollback). Serve on, but say so: migrations that
            # only add tables and columns leave this server's queries working.
            log.warning("the database is at schema version %d, newer than this server's %d", current, LATEST)
        if current >= target:
            return applied
        while True:
            with _one_at_a_time(database):
                history = _history(database)
                history.create_table(safe=True)
                current = version(database)
                if current >= target:
                    break
                migration = MIGRATIONS[current]
                migration.apply(Schema(database))
                history.create(version=migration.version, name=migration.name, applied_at=_utcnow())
            log.info("applied migration %s", migration)
            applied.append(migration)
    return applied


def require_latest(database) -> None:
    """Refuse a database this server's queries would fail on, with what to do about it."""
    with database.connection_context():
        current = version(database)
    if current < LATEST:
        raise SchemaBehind(
            f"the database is at schema version {current} and this server needs version {LATEST}: "
            "run `chat-server migrate`, or start without --no-migrate"
        )


def describe(applied: list[Migration], database) -> str:
    """What a run did, for the command line."""
    if not applied:
        with database.connection_context():
            return f"up to date at version {version(database)}"
    plural = "" if len(applied) == 1 else "s"
    return f"applied {len(applied)} migration{plural}: " + ", ".join(map(str, applied))


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
