"""The hot paths' hand-tuned two-dialect SQL: the history page, the chat list, search, a send and an event's
insert, each built once per kind of database (storage/statement.py) over the tables models.py passes in.

The tables come as keyword arguments, so that storage never imports the models it serves.
"""

import datetime
import json
import json.scanner
from dataclasses import dataclass, field

from peewee import JOIN, SQL, Case, Expression, PostgresqlDatabase, Select, Tuple, Value, fn

from ..core.times import rfc3339, utcnow
from .engines import db
from .search import CANDIDATES

MAX_ID = 2**63 - 1
EVENTS_CHANNEL = "chat_events"  # PostgreSQL NOTIFY channel; the payload is the newest event id
EVENT_LOCK_KEY = 0x63686175  # PostgreSQL advisory lock: event ids become visible in id order
MESSAGE_CREATED = "message.created"
UNREAD_CAP = 999  # chat_listing says why


def live_session(user, *, Session):
    """The join condition that finds the user's live session (parameters: Session.lookup's three, then `user`)."""
    seen = fn.COALESCE(Session.last_seen_at, Session.created_at)
    return (Session.token_hash == "") & (Session.created_at > utcnow()) & (seen > utcnow()) & (Session.user == user)


def session_seen(*, Session):
    """The session's last request, as the hot reads return it on every row: as text, which only the first row's is
    parsed from (Session.confirm), instead of PostgreSQL's driver making a datetime for each row."""
    return fn.COALESCE(Session.last_seen_at, Session.created_at).cast("text")


def time_text(column, rfc3339: bool = False):
    """A PostgreSQL time column as text with no fraction when it is zero, as isoformat() writes it: in the form
    SQLite stores ("2026-11-27 05:25:30.123456"), which rfc3339() reads, or with `rfc3339` already RFC 3339."""
    date = SQL("""'YYYY-MM-DD"T"HH24:MI:SS'""" if rfc3339 else "'YYYY-MM-DD HH24:MI:SS'")
    whole = fn.date_trunc(SQL("'second'"), column) == column
    text = fn.to_char(column, date).concat(Case(None, [(whole, SQL("''"))], fn.to_char(column, SQL("'.US'"))))
    return text.concat(SQL("'Z'")) if rfc3339 else text


def time_as_stored(column):
    """A time column as the text SQLite stores: PostgreSQL formats it itself, for the hot reads, where its driver
    would build a datetime for every row, which rfc3339() then formats again (BENCHMARKS.md)."""
    return time_text(column) if isinstance(db.obj, PostgresqlDatabase) else column


SNIPPET_LENGTH = 100  # characters of a replied-to message a reply quotes


def message_columns(*, Message, original, stored_times: bool = True) -> tuple:
    """What message_json() takes, in order: a message's columns, and of the message it answers (`original`, an alias
    of Message joined LEFT on reply_to_id) whether it still exists and its snippet."""
    time = time_as_stored if stored_times else (lambda column: column)
    return (
        Message.id,
        Message.content,
        Message.sender_id,
        time(Message.time),
        time(Message.edited_at),
        Message.attachments,
        Message.reply_to_id,
        Message.reply_to_sender_id,
        original.id,
        fn.SUBSTR(original.content, SQL("1"), SQL(str(SNIPPET_LENGTH))),
        Message.thread_root_id,
        Message.thread,
        Message.reactions,
        Message.mentions,
        Message.mentions_all,
    )


MESSAGE_WIDTH = 15  # len(message_columns())


def replied(query, *, Message, original):
    """The query with the messages its rows answer joined, as message_columns() reads them."""
    return query.join(original, JOIN.LEFT_OUTER, on=(original.id == Message.reply_to_id), src=Message)


REACTION_SEPARATOR = "\x1f"  # between the emoji of reactions_by(): a control character, never in an emoji


def reactions_by(*, Message, Reaction):
    """The emoji of the reader's own reactions to the row's message, joined by REACTION_SEPARATOR, or null
    (parameter: the reader). Only a message with reactions looks: a correlated lookup in Reaction's unique index."""
    postgres = isinstance(db.obj, PostgresqlDatabase)
    separator = fn.chr(SQL("31")) if postgres else fn.char(SQL("31"))
    joined = fn.string_agg(Reaction.emoji, separator) if postgres else fn.group_concat(Reaction.emoji, separator)
    own = Reaction.select(joined).where(Reaction.message == Message.id, Reaction.user_id == 0)
    return Case(None, [(Message.reactions.is_null(False), own)], None)


def messages_between(order, *, Membership, Message, Reaction, Session):
    """A page of a chat's history in `order`, thread replies aside, each message with the reader's own reactions
    (reactions_by) after its message_columns() (parameters: the reader, Session.lookup's three, the reader, the
    chat, the cursors, the reader and the chat again, the limit)."""
    # Only for a member with a live session, both checked in this query: the session as a join (one row at most,
    # by its unique hash), the membership once (no correlation, so SQLite evaluates it once and PostgreSQL plans
    # it as a one-time filter). A request then makes this one query (handlers/messages.py).
    member = Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0)
    original = Message.alias("original")
    query = Message.select(
        *message_columns(Message=Message, original=original),
        reactions_by(Message=Message, Reaction=Reaction),
        Session.id,
        session_seen(Session=Session),
    ).join(Session, on=live_session(0, Session=Session))
    return (
        replied(query, Message=Message, original=original)
        .where(Message.chat == 0, Message.id > 0, Message.id < 0, fn.EXISTS(member), Message.thread_root_id.is_null())
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


def chat_listing(*, Chat, DirectChat, Membership, Mention, Message, Session, User):
    """A page of a user's chats with their newest message and unread count (parameters: Session.lookup's three,
    the user twice, the cursor's two parts, the limit)."""
    # Sorting every chat of the user is unavoidable, since activity is computed; the page is chosen on the keys
    # alone, and only its own chats fetch their last message, which may be 10,000 characters.
    newest = Message.select(fn.MAX(Message.id)).where(Message.chat == Chat.id, Message.thread_root_id.is_null())
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
            Chat.kind,
            Membership.notify,
            Membership.muted_until,
            Session.id.alias("session_id"),
            session_seen(Session=Session).alias("seen"),
        )
        # The caller's live session, checked here too (models.Message.page says why).
        .join(Session, on=live_session(0, Session=Session))
        .join(Membership, on=(Membership.chat == Chat.id))
        .join(newest_row, JOIN.LEFT_OUTER, on=(newest_row.id == newest))
        .where(Membership.user == 0, Tuple(activity, Chat.id) <= Tuple(*LISTING_START))
        # A direct chat its member left stays out until a newer message arrives (conversations/direct.py).
        .where(Membership.hidden_after.is_null() | (fn.COALESCE(newest_row.id, SQL("0")) > Membership.hidden_after))
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
            after_marker.thread_root_id.is_null(),
        )
        .limit(SQL(str(UNREAD_CAP)))
    )
    unread = Message.select(fn.COUNT(SQL("*"))).from_(unread_rows.alias("capped"))
    # Of those, the ones that mention the user or everyone (Mention's user 0), counted from the Mention index.
    mention_rows = (
        Mention.select(SQL("1"))
        .where(
            Mention.chat_id == page.c.id,
            Mention.user_id.in_([page.c.user_id, SQL("0")]),
            Mention.message > fn.COALESCE(page.c.last_read_id, SQL("0")),
            Mention.sender_id != page.c.user_id,
        )
        .limit(SQL(str(UNREAD_CAP)))
    )
    mentioned = Message.select(fn.COUNT(SQL("*"))).from_(mention_rows.alias("mentioning"))
    # A direct chat is titled with the other person's name; once that account is gone, with the chat's own title.
    direct = DirectChat.alias("direct")
    other = User.alias("other")
    other_id = Case(None, [(direct.low == page.c.user_id, direct.high)], direct.low)
    return (
        Chat.select(
            page.c.id,
            fn.COALESCE(other.name, page.c.title),
            last.content,
            time_as_stored(last.time),
            last.sender_id,
            page.c.last_read_id,
            unread,
            page.c.activity,
            page.c.kind,
            mentioned,
            page.c.notify,
            time_as_stored(page.c.muted_until),
            page.c.session_id,
            page.c.seen,
        )
        .from_(page)
        .join(last, JOIN.LEFT_OUTER, on=(last.id == page.c.last_id))
        .join(direct, JOIN.LEFT_OUTER, on=(direct.chat == page.c.id))
        .join(other, JOIN.LEFT_OUTER, on=(other.id == other_id))
        .order_by(page.c.activity.desc(), page.c.id.desc())
    )


def chat_page(rows: list[tuple], limit: int) -> tuple[list[dict], str | None, tuple | None]:
    """chat_listing's rows (at most limit + 1) as the API shows a page of chats, the next page's cursor (None when
    no chat is left), and the live session's (id, last seen) from the first row (None when there is no row)."""
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
            "kind": kind,
            "mention_count": mentioned,
            "notify": notify,
            "muted_until": rfc3339(muted_until),
        }
        for (chat_id, title, content, time, sender_id, last_read_id, unread, _activity, kind, mentioned, notify,
             muted_until, _session, _seen) in rows
    ]  # fmt: skip
    return chats, (listing_cursor(rows[-1][7], rows[-1][0]) if more else None), live


def search(plan: str, in_one_chat: bool, *, Membership, Message, MessageSearch):
    """A search's statements, by `plan`; the chat's id comes after the cursor when `in_one_chat`.

    - "count": how many messages the reader's chats hold below the cursor, counted up to a limit (parameters:
      reader, cursor, chat, limit). Under search.CANDIDATE_LIMIT the search reads only those ("scan", "fill").
    - "index": the full-text index first (reader, query, cursor, chat, limit). SQLite walks its FTS5 index newest
      first and stops at the limit; PostgreSQL matches the GIN index on the messages' tsvector
      (migrations.message_search). Its cost follows the whole corpus: for readers of many messages only.
    - "scan" (PostgreSQL): the reader's messages first, each matched as it is read, never the GIN index (reader,
      cursor, chat, candidate limit, query, limit). The subquery's LIMIT keeps the match out of it.
    - "fill" (SQLite): copy the reader's messages into CANDIDATES (reader, cursor, chat), which "match"
      then searches (query, limit): FTS5 cannot match one row without reading a prefix's whole doclist.
    """
    columns = (
        Message.id,
        Message.chat,
        Message.content,
        Message.sender_id,
        Message.time,
        Message.edited_at,
        Message.attachments,
    )
    readable = (Membership.chat == Message.chat) & (Membership.user == 0)
    postgres = isinstance(db.obj, PostgresqlDatabase)
    if plan == "match":
        matches = Expression(SQL('"search_candidates"'), "MATCH", "")
        return (
            Message.select(*columns)
            .from_(CANDIDATES)
            .join(Message, on=(Message.id == CANDIDATES.rowid))
            .where(matches)
            .order_by(CANDIDATES.rowid.desc())
            .limit(1)
        )
    if plan in ("count", "scan", "fill"):
        picked = {"count": (Message.id,), "fill": (Message.id, Message.content), "scan": columns}[plan]
        mine = Message.select(*picked)
        mine = mine.join(Membership, on=readable).where(Message.id < 0)
        if in_one_chat:
            mine = mine.where(Message.chat == 0)
        if plan == "count":
            return mine.limit(1).select_from(fn.COUNT(SQL("*")))
        if plan == "fill":
            return CANDIDATES.insert(mine, columns=[CANDIDATES.rowid, CANDIDATES.content])
        candidate = mine.order_by(Message.id.desc()).limit(1).alias("candidate")
        c = candidate.c
        vector = fn.to_tsvector(SQL("'simple'"), c.content)
        matches = Expression(vector, "@@", fn.to_tsquery(SQL("'simple'"), ""))
        found = (c.id, c.chat_id, c.content, c.sender_id, c.time, c.edited_at, c.attachments)
        return Select([candidate], found).where(matches).order_by(c.id.desc()).limit(1)
    if postgres:
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


def send_message(*, Chat, Event, Membership, Message):
    """A send: the insert, which returns the id and the time.

    SQLite is given the time, and the read marker and the event are statements of their own in the caller's
    transaction. On PostgreSQL the send is one string of statements, one round trip and, outside a transaction,
    one implicit transaction (roundtrips.py says why):

    1. lock the chat's row, so that sends to one chat take turns and their times follow their ids (a statement
       of its own: in an INSERT ... SELECT ... FOR NO KEY UPDATE the clock may be read before the lock is
       granted), then the sender's membership row;
    2. take the event lock (models.Event says why), held to the commit;
    3. insert the message timed by the database's clock, move the sender's read marker to it, record its
       `message.created` event and notify the streams, as one data-modifying WITH. The event's data is built
       here in SQL, the same JSON as Event.record would write (message_created in Python; tests compare
       the two), because the event needs the id and the time the insert makes.

    NO KEY UPDATE is the mode an UPDATE of the title takes. It lets through the FOR KEY SHARE that the foreign
    keys of new messages and memberships take on the chat, and every plain read; it queues only with renames and
    leaves (FOR NO KEY UPDATE) and adds (FOR SHARE), short one-chat transactions like a send, and with the purge's
    delete. As each send's first lock it cannot close a cycle with leave_some's chats in id order.
    """
    postgres = isinstance(db.obj, PostgresqlDatabase)
    time = fn.timezone(SQL("'UTC'"), fn.clock_timestamp()) if postgres else Value(utcnow())
    # After the time: the attachments' JSON (null for none), then Post.values().
    insert = Message.insert_from(
        Membership.select(Value(0), Value(0), Value(""), time, Value(""), *POST_PLACEHOLDERS).where(
            Membership.user == 0, Membership.chat == 0
        ),
        [Message.chat, Message.sender_id, Message.content, Message.time, Message.attachments, *post_columns(Message)],
    )
    if not postgres:
        return insert.returning(Message.id, Message.time)
    lock = Chat.select(Chat.id).where(Chat.id == 0).for_update("FOR NO KEY UPDATE")
    # The sender's membership row before the event lock, as mark_read takes them (its UPDATE, then the event
    # lock at its commit): taken the other way round, a send and a mark-read of one member deadlock.
    member = Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0)
    event_lock = Select(columns=[fn.pg_advisory_xact_lock(SQL(str(EVENT_LOCK_KEY)))])
    sent = insert.returning(
        Message.id, Message.time, Message.chat, Message.sender_id, Message.content, Message.attachments,
        Message.thread_root_id, Message.mentions, Message.mentions_all,
    ).cte("sent")  # fmt: skip
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
        SQL("'time'"), time_text(sent.c.time, rfc3339=True), SQL("'edited_at'"), SQL("NULL"),
        SQL("'attachments'"), fn.COALESCE(sent.c.attachments.cast("jsonb"), SQL("'[]'::jsonb")),
        SQL("'reply_to'"), Value("").cast("jsonb"), SQL("'thread_root_id'"), sent.c.thread_root_id,
        SQL("'thread'"), SQL("NULL"), SQL("'reactions'"), SQL("'[]'::jsonb"),
        SQL("'mentions'"), fn.COALESCE(sent.c.mentions.cast("jsonb"), SQL("'[]'::jsonb")),
        SQL("'mentions_all'"), sent.c.mentions_all,
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


def record_and_notify(insert, *, Event) -> list:
    """PostgreSQL: take the event lock, run the insert, and notify the streams of the newest id, as two statements.

    The lock is held from here to the commit, so event ids become visible in id order (Event).
    """
    recorded = insert.returning(Event.id).cte("recorded")
    # The channel and the lock's key are constants, written into the SQL.
    notify = recorded.select_from(fn.pg_notify(SQL(f"'{EVENTS_CHANNEL}'"), fn.MAX(recorded.c.id).cast("text")))
    return [Select(columns=[fn.pg_advisory_xact_lock(SQL(str(EVENT_LOCK_KEY)))]), notify]


# The smaller statements of the hot paths; each placeholder value marks where a parameter goes.
def session_user(*, Session):
    """Parameters: the token's hash, then the oldest created_at and the oldest last request a live session has."""
    seen = fn.COALESCE(Session.last_seen_at, Session.created_at)
    return Session.select(Session.user, Session.id, seen).where(
        Session.token_hash == "", Session.created_at > utcnow(), seen > utcnow()
    )


def membership(*, Membership):
    """Parameters: the user, then the chat."""
    return Membership.select(Membership.id).where(Membership.user == 0, Membership.chat == 0)


def message(*, Message):
    """Parameters: the message, then its chat."""
    original = Message.alias("original")
    query = Message.select(*message_columns(Message=Message, original=original, stored_times=False))
    return replied(query, Message=Message, original=original).where(Message.id == 0, Message.chat == 0)


def move_read_marker(*, Membership):
    """Parameters: the message, the user, the chat, the message again: the marker only moves forward."""
    return Membership.update(last_read_id=0).where(
        Membership.user == 0,
        Membership.chat == 0,
        Membership.last_read_id.is_null() | (Membership.last_read_id < 0),
    )


_EVENT_PLACEHOLDER = {"kind": "", "chat_id": 0, "user_id": 0, "session_id": 0, "data": ""}


def record_event(*, Event):
    """Parameters: event_values()."""
    return Event.insert(**_EVENT_PLACEHOLDER, time=utcnow())


def event_values(row: dict) -> tuple:
    return (row["kind"], row["chat_id"], row.get("user_id"), row.get("session_id"), row["data"], row["time"])


def events_after(fields, *, Event):
    """Parameters: the last event id seen, the limit."""
    return Event.select(*fields).where(Event.id > 0).order_by(Event.id).limit(1)


@dataclass(frozen=True)
class Post:
    """What a message carries beside its text and files: the message it answers (with the quote it shows), the
    thread it is in, and whom its @names reached (conversations/posting.py works them out)."""

    reply_to_id: int | None = None
    reply_to_sender_id: int | None = None
    snippet: str | None = None
    thread_root_id: int | None = None
    mentions: list[int] = field(default_factory=list)
    mentions_all: bool = False

    def values(self) -> tuple:
        """The values of post_columns(), in order."""
        mentions = json.dumps(self.mentions) if self.mentions else None
        return self.reply_to_id, self.reply_to_sender_id, self.thread_root_id, mentions, self.mentions_all

    def reply_json(self) -> dict | None:
        if self.reply_to_id is None:
            return None
        return {"id": self.reply_to_id, "sender_id": self.reply_to_sender_id, "snippet": self.snippet, "deleted": False}


PLAIN = Post()
POST_PLACEHOLDERS = (Value(0), Value(0), Value(0), Value(""), Value(False))


def post_columns(Message) -> tuple:
    return (Message.reply_to_id, Message.reply_to_sender_id, Message.thread_root_id, Message.mentions,
            Message.mentions_all)  # fmt: skip


# The JSON this server wrote itself into a message's columns, read with json's own C scanner: the same parse as
# json.loads, without its two Python-level calls, which cost more than the parse of such short texts (a page decodes
# a dozen of them). The text is always one JSON value and nothing else, which json.loads would also check.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def stored_json(text: str):
    return _scan_json(text, 0)[0]


def message_json(row, mine: frozenset = frozenset()) -> dict:
    """A message as the API shows it (the Message schema), from message_columns()' values; `mine` holds the
    (message id, emoji) of the reader's own reactions. Most messages carry none of the optional parts, so each is
    decoded only when its column is set: this runs for every message of every page."""
    (message_id, content, sender_id, time, edited_at, attachments, reply_to_id, reply_sender, original, snippet,
     thread_root_id, thread, reactions, mentions, mentions_all) = row[:MESSAGE_WIDTH]  # fmt: skip
    message = {
        "id": message_id,
        "content": content,
        "sender_id": sender_id,
        "time": rfc3339(time),
        "edited_at": None if edited_at is None else rfc3339(edited_at),
        "attachments": stored_json(attachments) if attachments else [],
        "reply_to": None,
        "thread_root_id": thread_root_id,
        "thread": stored_json(thread) if thread else None,
        "reactions": [],
        "mentions": stored_json(mentions) if mentions else [],
        "mentions_all": bool(mentions_all),
    }
    if reply_to_id is not None:
        gone = original is None
        message["reply_to"] = {
            "id": reply_to_id,
            "sender_id": reply_sender,
            "snippet": None if gone else snippet,
            "deleted": gone,
        }
    if reactions:
        counts = stored_json(reactions)
        message["reactions"] = [{"emoji": e, "count": n, "me": (message_id, e) in mine} for e, n in counts]
    return message


def new_message_json(message_id: int, content: str, sender_id: int, time, attachments, post: Post) -> dict:
    """A message just sent, as its message.created event shows it; on PostgreSQL a send builds it in SQL."""
    return {
        "id": message_id,
        "content": content,
        "sender_id": sender_id,
        "time": rfc3339(time),
        "edited_at": None,
        "attachments": json.loads(attachments) if attachments else [],
        "reply_to": post.reply_json(),
        "thread_root_id": post.thread_root_id,
        "thread": None,
        "reactions": [],
        "mentions": post.mentions,
        "mentions_all": post.mentions_all,
    }


def message_created(chat_id: int, message: dict) -> dict:
    """The data of a message.created event; on PostgreSQL a send builds the same JSON in SQL (send_message)."""
    return {"chat_id": chat_id, "message": message}


# Chats one replay query scans; a user in more chats takes several queries, merged.
REPLAY_CHATS_PER_QUERY = 200


def replay(starts: dict[int, int], upto: int, limit: int, user_id: int, after: int, fields, ended: str, *, Event):
    """The oldest `limit` events up to `upto` of the chats in `starts`, each chat's after the id given for it, and
    the user's own events of no chat but `ended` (an invitation) after `after`.

    Each chat is an ordered scan of the (chat_id, id) index that stops at `limit` rows, so a page costs the same
    however long the log before the resume point is; the chats' pages are merged by id.
    """
    own = (
        Event.select(*fields)
        .where(Event.user_id == user_id, Event.chat_id.is_null(), Event.kind != ended, Event.id > after)
        .where(Event.id <= upto)
        .order_by(Event.id)
        .limit(limit)
    )
    chats = sorted(starts.items())
    if not chats:
        return [tuple(row) for row in own.tuples()]
    rows: list[tuple] = []
    for first in range(0, len(chats), REPLAY_CHATS_PER_QUERY):
        scans = [
            Event.select(*fields)
            .where(Event.chat_id == chat, Event.id > start, Event.id <= upto)
            .order_by(Event.id)
            .limit(limit)
            .alias(f"chat{n}")
            for n, (chat, start) in enumerate(chats[first : first + REPLAY_CHATS_PER_QUERY])
        ]
        if first == 0:
            scans.append(own.alias("own"))
        # A compound of subqueries: SQLite allows ORDER BY and LIMIT in a compound's parts only inside one.
        merged = Select(from_list=[scans[0]], columns=[SQL("*")])
        for scan in scans[1:]:
            merged = merged.union_all(Select(from_list=[scan], columns=[SQL("*")]))
        page = [tuple(row) for row in db.execute(merged.order_by(SQL("1")).limit(limit))]
        rows = sorted(rows + page)[:limit]
    return rows
