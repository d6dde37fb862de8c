"""Fill a chat database fast, straight through the Peewee models: users, chats with members, and their messages.

    python load/seed.py --database sqlite:///chat.db --users 1000 --chats 5000 --messages 1000000

Every seeded user has the password printed at the end, so you can log in as any of them. Messages are spread at
random over the chats, each sent by a member of its chat, with times that increase with the message id.
"""

import argparse
import datetime
import random
import time

from peewee import IntegrityError, chunked

from chat_server import models
from chat_server.accounts import passwords
from chat_server.models import Chat, Membership, Message, User, db

PASSWORD = "seeded-password"
# SQLite allows 32,766 bound values per statement; the widest row here has 4 values.
BATCH_ROWS = 8000
# One transaction per this many messages: big enough to amortise the commit, small enough for a bounded WAL.
COMMIT_EVERY = 200_000
PHRASES = (
    "hi",
    "morning!",
    "did the deploy go out?",
    "lunch at noon?",
    "see the review comments",
    "thanks, looks good",
    "can you take a look at the failing build when you have a minute",
    "ok",
    "on my way",
    "I'll be ten minutes late to the standup, start without me",
)


# Made-up words for searches of rare words (--rare-words): word n is the same in every run, and appears in about
# messages / (10 * N) messages.
SYLLABLES = ("ka", "lo", "mi", "ru", "te", "vo", "zi", "pa", "ne", "su", "bo", "gi", "da", "fe", "hu", "jo")


def rare_word(n: int) -> str:
    """The made-up word number n (0 <= n): "kalomi" and the like, its syllables the digits of n in base 16."""
    digits = []
    for _ in range(4):
        n, digit = divmod(n, len(SYLLABLES))
        digits.append(SYLLABLES[digit])
    return "".join(digits) + "x"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="sqlite:///path/to/file.db or postgresql://...")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--chats", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--members-per-chat", type=int, default=5, help="at most this many, at least 2 (default 5)")
    parser.add_argument("--prefix", default="seed", help="user names are <prefix>-<n> (default %(default)s)")
    parser.add_argument("--random-seed", type=int, default=1, help="same seed, same data (default %(default)s)")
    parser.add_argument(
        "--rare-words",
        type=int,
        default=0,
        help="one message in ten ends with one of this many made-up words, rare_word(n) (default: none)",
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.chats < 0 or args.messages < 0:
        parser.error("--users must be at least 1, --chats and --messages not negative")
    if args.messages and not args.chats:
        parser.error("messages need at least one chat")
    return args


def insert_returning_ids(model, fields, rows) -> list[int]:
    ids = []
    for batch in chunked(rows, BATCH_ROWS // len(fields)):
        ids.extend(row[0] for row in model.insert_many(batch, fields=fields).returning(model.id).tuples().execute())
    return sorted(ids)


def seed_users(count: int, prefix: str, joined: datetime.datetime) -> list[int]:
    password_hash = passwords.hasher().hash(PASSWORD)
    rows = ((f"{prefix}-{n}", f"{prefix}-{n}@seed.example", password_hash) for n in range(1, count + 1))
    with db.atomic():
        return insert_returning_ids(User, [User.name, User.email, User.password_hash], rows)


def seed_chats(count: int, user_ids: list[int], per_chat: int, created: datetime.datetime, rng) -> dict[int, list]:
    """Create the chats and their memberships; return each chat's member ids."""
    size = max(1, min(per_chat, len(user_ids)))
    rows = ((f"chat {n}", created) for n in range(1, count + 1))
    with db.atomic():
        chat_ids = insert_returning_ids(Chat, [Chat.title, Chat.created_at], rows)
        members = {chat_id: rng.sample(user_ids, rng.randint(min(2, size), size)) for chat_id in chat_ids}
        memberships = ((chat_id, user_id, created) for chat_id, people in members.items() for user_id in people)
        for batch in chunked(memberships, BATCH_ROWS // 3):
            Membership.insert_many(batch, fields=[Membership.chat, Membership.user, Membership.joined_at]).execute()
    return members


def message_batches(count, members, start, step, rng, rare_words: int = 0):
    """Rows of (chat, sender, content, time), a batch at a time; building them is a third of the seed's work."""
    chats = list(members.items())
    size = BATCH_ROWS // 4
    moment = start
    for first in range(0, count, size):
        n = min(size, count - first)
        rows = []
        for (chat_id, people), text in zip(rng.choices(chats, k=n), rng.choices(PHRASES, k=n), strict=True):
            moment += step
            if rare_words and rng.random() < 0.1:
                text = f"{text} re: {rare_word(int(rng.random() * rare_words))}"
            rows.append((chat_id, people[int(rng.random() * len(people))], text, moment))
        yield rows


def seed_messages(count, members, start, step, rng, rare_words: int = 0):
    fields = [Message.chat, Message.sender_id, Message.content, Message.time]
    batches = message_batches(count, members, start, step, rng, rare_words)
    for transaction in chunked(batches, COMMIT_EVERY // (BATCH_ROWS // len(fields))):
        with db.atomic():
            for batch in transaction:
                Message.insert_many(batch, fields=fields).execute()


def main(argv=None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.random_seed)
    models.init_db(args.database)
    passwords.configure("cheapest")
    now = models.utcnow()
    # Messages end about now, one millisecond apart; users and chats exist before the first of them.
    step = datetime.timedelta(milliseconds=1)
    start = now - step * (args.messages + 1)
    began = time.perf_counter()
    with db.connection_context():
        try:
            user_ids = seed_users(args.users, args.prefix, start)
        except IntegrityError as exc:
            raise SystemExit(f"cannot add users named {args.prefix}-N ({exc}); choose another --prefix") from None
        members = seed_chats(args.chats, user_ids, args.members_per_chat, start, rng)
        setup = time.perf_counter() - began
        began = time.perf_counter()
        seed_messages(args.messages, members, start, step, rng, args.rare_words)
        elapsed = time.perf_counter() - began
        # Fresh statistics, as after any bulk load: the planner then sees the tables as they are, not as empty.
        # (PostgreSQL's autovacuum would get there within a minute; a benchmark starting at once would not wait.)
        db.execute_sql("ANALYZE")
    memberships = sum(len(people) for people in members.values())
    print(f"{len(user_ids)} users and {len(members)} chats with {memberships} memberships in {setup:.2f}s")
    if args.messages:
        rate = args.messages / elapsed
        print(f"{args.messages} messages in {elapsed:.2f}s: {rate:,.0f} messages/s")
    print(f"log in as {args.prefix}-1 .. {args.prefix}-{args.users} with password {PASSWORD!r}")


if __name__ == "__main__":
    main()
