"""Issue 24's data for `python load/benchmark.py conversations`: the same traffic laid on the code before the issue and
on this code, through the API, so that only what this code adds differs.

Both servers start from the same load/seed.py data (2 users, seed-1 and seed-2, in 10 chats). `decorate` then sends
the same messages, by the same people, into the same chats of each, and on this code also gives them what issue 24
added:
- the measured history chat's newest page ends with PAGE messages, holding replies (`reply_to`, one to a message
  later deleted, on both servers), @mentions and `@all`, thread roots with summaries (THREAD_REPLIES replies each,
  which stay out of the history), and reactions (seed-1's own among them, so the page reads its "me");
- seed-2 @mentions seed-1 in other chats, so seed-1's chat list shows `mention_count`s;
- seed-1's eleventh chat is a direct chat with seed-2 (on the code before the issue, a group chat of the two).

What was laid is read back from this code's answers (`Shape`) and printed with the results, so a page that lost its
features (a seed chat too short, a changed contract) is seen, not measured by mistake.

Run as a script, it times the three reads' model calls in-process (no HTTP, no framework) on a database the servers
left, with whatever chat_server the running Python imports: the benchmark runs it with each server's venv.

    python load/conversations_bench.py --database sqlite:///after.db --user 1 --history-chat 1 --plain-chat 10
"""

import argparse
import datetime
import json
import random
import statistics
import time
import urllib.parse
from dataclasses import dataclass

import httpx
from seed import PHRASES

from chat_server import models
from chat_server.models import Chat, Message, Session, db

PAGE = 20  # the measured history page: GET /api/chats/{id}?limit=20
THREAD_REPLIES = 3
TIMEOUT = httpx.Timeout(30.0)
REACTIONS = ("👍", "🎉", "❤️", "😂")


@dataclass
class Shape:
    """What seed-1's measured page and chat list hold on this code."""

    page_messages: int = 0
    with_reactions: int = 0
    with_my_reaction: int = 0
    replies: int = 0
    thread_roots: int = 0
    mentioning: int = 0
    chats: int = 0
    mention_count: int = 0
    direct_chats: int = 0

    def describe(self) -> str:
        return (
            f"the history page: {self.page_messages} messages, {self.with_reactions} with reactions "
            f"({self.with_my_reaction} with the reader's own), {self.replies} replies, {self.thread_roots} thread "
            f"roots with summaries ({THREAD_REPLIES} replies each), {self.mentioning} with mentions; the chat list: "
            f"{self.chats} chats, {self.direct_chats} direct, mention_count {self.mention_count} in all"
        )


class Person:
    """A seeded user's session on one server."""

    def __init__(self, url: str, name: str, password: str):
        self.client = httpx.Client(base_url=url, timeout=TIMEOUT)
        response = self.client.post("/api/login", data={"name": name, "password": password})
        response.raise_for_status()
        self.id = int(self.client.cookies["user_id"])
        self.name = name

    def send(self, chat_id: int, content: str, **extra) -> int:
        response = self.client.post(f"/api/chats/{chat_id}", data={"content": content, **extra})
        if response.status_code != 201:
            raise RuntimeError(f"a send to chat {chat_id} answered {response.status_code}: {response.text[:300]}")
        return response.json()["id"]

    def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        path = f"/api/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(emoji)}"
        response = self.client.put(path)
        if response.status_code != 200:
            raise RuntimeError(f"a reaction answered {response.status_code}: {response.text[:300]}")

    def page(self, chat_id: int) -> list[dict]:
        response = self.client.get(f"/api/chats/{chat_id}", params={"limit": PAGE})
        response.raise_for_status()
        return response.json()["messages"]

    def chats(self) -> list[dict]:
        response = self.client.get("/api/chats")
        response.raise_for_status()
        return response.json()["chats"]

    def close(self) -> None:
        self.client.close()


def decorate(url: str, password: str, features: bool, history_chat: int, other_chats: list[int]) -> None:
    """Lay the module docstring's traffic on one server; `features` is False for the code before issue 24, which
    gets the same sends as plain messages and none of the rest."""
    rng = random.Random(24)
    reader, writer = Person(url, "seed-1", password), Person(url, "seed-2", password)
    try:
        seeded = [m["id"] for m in reader.page(history_chat)]
        if len(seeded) < PAGE:
            raise RuntimeError(f"chat {history_chat} holds {len(seeded)} messages, fewer than a page of {PAGE}")
        # A message the page's replies answer, then deleted: a reply then shows `deleted: true`.
        gone = writer.send(history_chat, rng.choice(PHRASES))
        if features:
            for root in seeded[-13], seeded[-10], seeded[-6], seeded[-3]:
                for person in [writer, reader, writer][:THREAD_REPLIES]:
                    person.send(history_chat, rng.choice(PHRASES), thread_root_id=root)
        sends = [
            (writer, "", {"reply_to": seeded[-15]}),
            (reader, "", {"reply_to": seeded[-9]}),
            (writer, "@seed-1 ", {}),
            (writer, "@all ", {"reply_to": gone}),
            (reader, "", {}),
            (writer, "@seed-1 ", {"reply_to": seeded[-2]}),
        ]
        for person, mention, extra in sends:
            person.send(history_chat, mention + rng.choice(PHRASES), **(extra if features else {}))
        response = writer.client.delete(f"/api/chats/{history_chat}", params={"id": gone})
        response.raise_for_status()
        if features:
            newest = [m["id"] for m in reader.page(history_chat)]
            for message_id in newest[-1], newest[-3], newest[-8], newest[-13], newest[-17]:
                reader.react(history_chat, message_id, REACTIONS[0])
            for n, message_id in enumerate((newest[-1], newest[-5], newest[-8], newest[-11], newest[-16])):
                writer.react(history_chat, message_id, REACTIONS[n % len(REACTIONS)])
        for chat_id in other_chats[:3]:
            writer.send(chat_id, "@seed-1 " + rng.choice(PHRASES))
        if features:
            response = writer.client.post(f"/api/direct/{reader.id}")
            response.raise_for_status()
            extra_chat = response.json()["id"]
        else:
            response = writer.client.post("/api/chats", data={"title": "seed-1 and seed-2"})
            response.raise_for_status()
            extra_chat = response.json()["id"]
            writer.client.post(f"/api/chats/{extra_chat}/members", data={"user_id": reader.id}).raise_for_status()
        writer.send(extra_chat, rng.choice(PHRASES))
    finally:
        reader.close()
        writer.close()


def shape(url: str, password: str, history_chat: int) -> Shape:
    """What seed-1's page of the history chat and chat list hold, read back from the server."""
    reader = Person(url, "seed-1", password)
    try:
        page, chats = reader.page(history_chat), reader.chats()
    finally:
        reader.close()
    return Shape(
        page_messages=len(page),
        with_reactions=sum(bool(m.get("reactions")) for m in page),
        with_my_reaction=sum(any(r["me"] for r in m.get("reactions", ())) for m in page),
        replies=sum(m.get("reply_to") is not None for m in page),
        thread_roots=sum(m.get("thread") is not None for m in page),
        mentioning=sum(bool(m.get("mentions")) or bool(m.get("mentions_all")) for m in page),
        chats=len(chats),
        mention_count=sum(c.get("mention_count", 0) for c in chats),
        direct_chats=sum(c.get("kind") == "direct" for c in chats),
    )


def in_process(database: str, user_id: int, history_chat: int, plain_chat: int, batches: int, calls: int) -> dict:
    """µs per call of each read's model call, the least and the median of `batches` batches of `calls` calls, after
    a warm-up: the chat list (Chat.listing_for), a page of the history chat and of the plain chat (Message.page)."""
    models.init_db(database)
    reads = {
        "list": lambda lookup: Chat.listing_for(user_id, lookup),
        "history": lambda lookup: Message.page(history_chat, user_id, lookup, PAGE, None, None),
        "plain history": lambda lookup: Message.page(plain_chat, user_id, lookup, PAGE, None, None),
    }
    results = {}
    with db.connection_context():
        day = datetime.timedelta(days=1)
        lookup = Session.lookup(Session.start(user_id), day, 30 * day)
        if not Chat.listing_for(user_id, lookup)[0]:
            raise RuntimeError(f"user {user_id} has no chats in {database}")
        for name, read in reads.items():
            for _ in range(calls // 4):
                read(lookup)
            took = []
            for _ in range(batches):
                began = time.perf_counter()
                for _ in range(calls):
                    read(lookup)
                took.append((time.perf_counter() - began) / calls * 1e6)
            results[name] = {"least": min(took), "median": statistics.median(took)}
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Time the chat list and two history pages in-process.")
    parser.add_argument("--database", required=True)
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("--history-chat", type=int, required=True)
    parser.add_argument("--plain-chat", type=int, required=True)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    timed = in_process(args.database, args.user, args.history_chat, args.plain_chat, args.batches, args.calls)
    print(json.dumps(timed))


if __name__ == "__main__":
    main()
