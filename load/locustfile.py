"""Locust traffic shaped like a chat app: chatters talk in shared chats, readers page back through their history,
listeners hold an event stream (`GET /api/events`) open and talk too. Chatters also react, reply, post in threads,
mention members and now and then open a direct chat; readers react and open threads (docs/load-testing.md gives the
proportions).

Every response is checked against what this user already knows (its own sends, renames, deletions and the members it
added), so a run fails on wrong answers as well as on errors. Every message sent into a chat whose member holds a
stream, and every member added to a listener, must arrive on that stream exactly once, within DELIVERY_SECONDS of the
sender's 201: a doubled event, or one that comes late or never, is a failure of `SSE /api/events ...`, whose response
time is the delivery latency. Run the web UI with `locust -f load/locustfile.py --host http://127.0.0.1:8080`, or a
bounded headless run with `tox -e load`.
"""

import ipaddress
import itertools
import json
import logging
import random
import re
import secrets
import threading
import time
from urllib.parse import quote, urlsplit

import gevent
import gevent.event
from locust import FastHttpUser, events, task
from locust.clients import HttpSession
from locust.exception import StopUser
from locust.runners import WorkerRunner

PASSWORD = "load-test-password"
DEFAULT_MAX_P95_MS = 500.0
HISTORY_PAGE = 20
CHAT_PAGE = 100  # GET /api/chats without a limit
CHAT_KEYS = {
    *("id", "title", "last_message", "last_message_time", "sender_id", "last_read_id", "unread_count"),
    *("kind", "mention_count", "notify", "muted_until"),
}
MESSAGE_KEYS = {
    *("id", "content", "sender_id", "time", "edited_at", "attachments"),
    *("reply_to", "thread_root_id", "thread", "reactions", "mentions", "mentions_all"),
}
REPLY_KEYS = {"id", "sender_id", "snippet", "deleted"}
THREAD_KEYS = {"reply_count", "last_reply_at", "participant_ids"}
REACTION_KEYS = {"emoji", "count", "me"}
SNIPPET = 100  # characters of the original a reply quotes
THREAD_PAGE = 100  # GET .../thread without a limit
THREAD_LIST = 50  # GET /api/threads without a limit
EMOJI = ("👍", "❤️", "😂", "🎉", "👀", "🚀")
# What a chatter's send carries, as shares of its sends: a post in a thread, a reply (`reply_to`), an @name of a
# member, `@all`. The rest are plain messages.
THREAD_SHARE = 0.10
REPLY_SHARE = 0.15
MENTION_SHARE = 0.10
TYPING_SHARE = 0.5  # messages that start with POST .../typing, as a client typing them does
MENTION_ALL_SHARE = 0.01
REMEMBERED = 200  # messages, threads and reactions a user keeps in mind to check or act on later
FOLLOW_UP_PAGE = 1000
MY_RECENT_MESSAGES = 200
# Names must be unique across runs against the same database, and across Locust worker processes.
RUN_TAG = secrets.token_hex(3)
_serial = itertools.count(1)
# Every message this file sends starts with its sender's id, so any reader can tell whether content and sender_id
# came from the same row. Messages that other tools wrote (for example load/seed.py) do not match and are not judged.
CONTENT_TAG = re.compile(r"^m(\d+)\.(\d+) ")
WORDS = ("hi", "ok", "sure", "lunch?", "deploying", "merged", "review", "tomorrow", "sounds good", "thanks", "ship it")
TIME_SHAPE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
# Event streams: an event that has not arrived this long after the 201 of the change is lost.
DELIVERY_SECONDS = 5.0
READY_SECONDS = 10.0  # from opening a stream to its `ready` event
STREAM_READ_TIMEOUT = 60.0  # seconds without a byte before a stream counts as dead; heartbeats come every 15 s
REPLAY_COMPARED = 50  # a replay check starts after one of the stream's newest this-many events

log = logging.getLogger("load")
# A message's fields from issue 24 with nothing in them, for checking one of them alone.
EMPTY_CONVERSATION = {
    "reply_to": None,
    "thread_root_id": None,
    "thread": None,
    "reactions": [],
    "mentions": [],
    "mentions_all": False,
}


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument(
        "--max-p95-ms",
        type=float,
        default=DEFAULT_MAX_P95_MS,
        env_var="LOCUST_MAX_P95_MS",
        help="Exit non-zero when any endpoint's 95th percentile response time is above this (ms).",
    )
    parser.add_argument(
        "--think-scale",
        type=float,
        default=1.0,
        env_var="LOCUST_THINK_SCALE",
        help="Multiply every user's pause between actions: 0 sends back to back, 2 is twice as slow.",
    )


def is_loopback(url: str | None) -> bool:
    host = urlsplit(url or "").hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@events.init.add_listener
def _refuse_remote_hosts(environment, **_kwargs):
    if environment.host and not is_loopback(environment.host):
        raise SystemExit(f"refusing to load {environment.host}: this load test only targets loopback addresses")


@events.quitting.add_listener
def _judge_run(environment, **_kwargs):
    """Fail the process on any failed request, any exception in a task, or any endpoint slower than --max-p95-ms."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    limit = options.max_p95_ms if options else DEFAULT_MAX_P95_MS
    stats = environment.stats
    problems = []
    if stats.total.num_failures:
        problems.append(f"{stats.total.num_failures} of {stats.total.num_requests} requests failed")
    if environment.runner is not None and environment.runner.exceptions:
        problems.append(f"{len(environment.runner.exceptions)} kinds of exception in tasks")
    for entry in sorted(stats.entries.values(), key=lambda e: (e.name, e.method)):
        p95 = entry.get_response_time_percentile(0.95)
        if entry.num_requests and p95 > limit:
            problems.append(f"p95 of {entry.method} {entry.name} is {p95:.0f} ms, over the {limit:.0f} ms limit")
    if options and options.headless and not stats.total.num_requests:
        problems.append("no requests were made")
    for problem in problems:
        log.error("load check failed: %s", problem)
    if problems:
        environment.process_exit_code = 1
    else:
        log.info("load check passed: no failures, every endpoint's p95 within %.0f ms", limit)


# The stream's ephemeral events and the keys their data has.
EPHEMERAL = {
    "typing": {"chat_id", "user_id", "active", "expires_in_ms", "resend_in_ms"},
    "presence": {"user_id", "state", "status_text"},
}


class Mismatch(Exception):
    """A response that does not match what the API promises or what this user knows."""


class Directory:
    """Who is around and which messages are gone, shared by every simulated user of this process.

    Chatters pick the people they add to chats from here, and every read checks that messages whose deletion was
    confirmed before the read was sent are not served. Nothing in here yields, and the lock (a gevent lock once
    Locust has patched threading) keeps it correct even if that changes.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._people = {"reader": [], "chatter": [], "listener": []}
        self._withdrawn: set[str] = set()
        self._deleted: dict[int, float] = {}
        self._thread_replies: set[int] = set()

    def join(self, kind: str, user_id: int, name: str) -> None:
        with self._lock:
            self._people[kind].append((user_id, name))

    def pick(self, kind: str, exclude: set[int]) -> tuple[int, str] | None:
        with self._lock:
            candidates = [person for person in self._people[kind] if person[0] not in exclude]
        return random.choice(candidates) if candidates else None

    def withdraw(self, content: str) -> None:
        """Note, before the delete is sent, that this text may vanish at any moment."""
        with self._lock:
            self._withdrawn.add(content)

    def was_withdrawn(self, content: str) -> bool:
        with self._lock:
            return content in self._withdrawn

    def confirm_deleted(self, message_id: int) -> None:
        with self._lock:
            self._deleted[message_id] = time.monotonic()

    def deleted_before(self, message_id: int, moment: float) -> bool:
        with self._lock:
            confirmed = self._deleted.get(message_id)
        return confirmed is not None and confirmed < moment

    def posted_in_thread(self, message_id: int) -> None:
        """Note a reply in a thread, which must never show in a chat's history."""
        with self._lock:
            self._thread_replies.add(message_id)

    def is_thread_reply(self, message_id: int) -> bool:
        with self._lock:
            return message_id in self._thread_replies


directory = Directory()


def snippet(response) -> str:
    text = (response.text or "") if response.status_code else str(response.error)
    return text[:200]


def expect_keys(obj, keys: set[str], what: str) -> None:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise Mismatch(f"{what} should have exactly {sorted(keys)}: {str(obj)[:200]}")


def expect_id(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Mismatch(f"{what} should be a positive integer, got {value!r}")
    return value


def expect_created(body) -> int:
    expect_keys(body, {"status", "id"}, "a created response")
    if body["status"] != "ok":
        raise Mismatch(f"status should be 'ok': {body}")
    return expect_id(body["id"], "id")


def expect_sent(body) -> int:
    """A send's 201: the id, and whom its mentions reached."""
    expect_keys(body, {"status", "id", "mentions", "mentions_all"}, "a sent message")
    if body["status"] != "ok" or not isinstance(body["mentions"], list) or not isinstance(body["mentions_all"], bool):
        raise Mismatch(f"not a sent message: {body}")
    return expect_id(body["id"], "id")


def expect_ok(body) -> None:
    if body != {"status": "ok"}:
        raise Mismatch(f'expected {{"status": "ok"}}, got {str(body)[:200]}')


def expect_error(body) -> None:
    expect_keys(body, {"error"}, "an error")
    if not isinstance(body["error"], str) or not body["error"]:
        raise Mismatch(f"error should be a non-empty string: {body}")


def expect_time(value, what: str) -> None:
    if not isinstance(value, str) or not TIME_SHAPE.match(value):
        raise Mismatch(f"{what} should be an RFC 3339 UTC time, got {value!r}")


def expect_count(value, what: str, low: int = 0, high: int = 999) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Mismatch(f"{what} should be an integer {low}-{high}, got {value!r}")
    return value


def expect_conversation(message: dict, what: str) -> None:
    """The fields issue 24 added to a message: its quote, thread, reactions and mentions are well formed."""
    reply = message["reply_to"]
    if reply is not None:
        expect_keys(reply, REPLY_KEYS, f"{what} reply_to")
        expect_id(reply["id"], f"{what} reply_to id")
        if not isinstance(reply["deleted"], bool) or (reply["snippet"] is None) != reply["deleted"]:
            raise Mismatch(f"{what} reply_to should have a snippet unless deleted: {reply}")
        if reply["snippet"] is not None and (not isinstance(reply["snippet"], str) or len(reply["snippet"]) > SNIPPET):
            raise Mismatch(f"{what} reply_to snippet should be a string of at most {SNIPPET}: {reply}")
    if message["thread_root_id"] is not None:
        expect_id(message["thread_root_id"], f"{what} thread_root_id")
    thread = message["thread"]
    if thread is not None:
        expect_keys(thread, THREAD_KEYS, f"{what} thread")
        expect_count(thread["reply_count"], f"{what} reply_count", 1, 2**31)
        if thread["last_reply_at"] is not None:
            expect_time(thread["last_reply_at"], f"{what} last_reply_at")
        people = thread["participant_ids"]
        if not isinstance(people, list) or not 1 <= len(people) <= 10 or len(set(people)) != len(people):
            raise Mismatch(f"{what} participant_ids should be 1-10 distinct ids: {people}")
    reactions = message["reactions"]
    if not isinstance(reactions, list) or len(reactions) > 20:
        raise Mismatch(f"{what} reactions should be a list of at most 20: {str(reactions)[:200]}")
    for reaction in reactions:
        expect_keys(reaction, REACTION_KEYS, f"{what} reaction")
        expect_count(reaction["count"], f"{what} reaction count", 1, 2**31)
        if not isinstance(reaction["me"], bool) or not isinstance(reaction["emoji"], str):
            raise Mismatch(f"{what} has a malformed reaction: {reaction}")
    if len({reaction["emoji"] for reaction in reactions}) != len(reactions):
        raise Mismatch(f"{what} lists an emoji twice: {reactions}")
    mentions = message["mentions"]
    if not isinstance(mentions, list) or len(set(mentions)) != len(mentions):
        raise Mismatch(f"{what} mentions should be a list of distinct ids: {mentions}")
    for user_id in mentions:
        expect_id(user_id, f"{what} mention")
    if not isinstance(message["mentions_all"], bool):
        raise Mismatch(f"{what} mentions_all should be a boolean: {message['mentions_all']!r}")


def expect_author(content: str, sender_id, what: str) -> None:
    tag = CONTENT_TAG.match(content)
    if tag and int(tag.group(1)) != sender_id:
        raise Mismatch(f"{what} {content[:40]!r} was written by user {tag.group(1)} but says sender_id {sender_id}")


class StreamTracker:
    """One open event stream: the events it received, and the ones it must still receive.

    Senders say what to expect (`expect_message`, `expect_join`) once their request got its 201; the stream's
    reader greenlet takes events as they arrive. Either may come first. Each expectation is met by exactly one
    event within DELIVERY_SECONDS, and is reported to Locust as a request of type SSE whose response time is
    the delivery latency (0 when the event beat the 201 back). Nothing here yields, so no lock is needed.
    """

    def __init__(self, user: "ChatUser", chats: set[int]):
        self.user = user
        self.user_id = user.user_id
        self.chats = set(chats)  # chats whose messages this stream is known to deliver
        self.accepting = False  # whether senders may still register expectations
        self.closing = False  # the stream is being closed on purpose: its end is no failure
        self.ready = gevent.event.Event()
        self.ready_id: int | None = None
        self.last_id = 0  # the newest event id seen, the ready event's included
        self.seen: dict[int, tuple[str, dict]] = {}  # every event but `ready`, by id: (type, data)
        self.order: list[int] = []
        self.messages: dict[int, tuple[float, int, str, int]] = {}  # message id: (arrival, chat, content, sender)
        self.joined: dict[int, float] = {}  # chat id: arrival of my member.added
        self.pending: dict[tuple[str, int], tuple[float, tuple]] = {}  # (kind, id): (201 time, what must match)

    def report(self, name: str, started: float, problem: str | None = None, now: float | None = None) -> None:
        elapsed = max(0.0, ((now or time.monotonic()) - started) * 1000)
        self.user.environment.events.request.fire(
            request_type="SSE",
            name=name,
            response_time=elapsed,
            response_length=0,
            exception=Mismatch(f"user {self.user_id}'s stream: {problem}") if problem else None,
            context={},
        )

    # What senders expect.

    def expect_message(self, message_id: int, chat_id: int, content: str, sender_id: int, acked: float) -> None:
        if not self.accepting:
            return
        if message_id in self.messages:
            self._met_message(message_id, (chat_id, content, sender_id), acked)
        else:
            self.pending[("message", message_id)] = (acked, (chat_id, content, sender_id))

    def expect_join(self, chat_id: int, acked: float) -> None:
        if not self.accepting:
            return
        if chat_id in self.joined:
            self.report("/api/events member.added", acked, now=max(acked, self.joined[chat_id]))
        else:
            self.pending[("member", chat_id)] = (acked, ())

    def _met_message(self, message_id: int, expected: tuple, acked: float) -> None:
        arrival, *got = self.messages[message_id]
        problem = None
        if tuple(got) != expected:
            problem = f"message {message_id} arrived as (chat, content, sender) {tuple(got)}, not {expected}"
        self.report("/api/events message.created", acked, problem, now=max(acked, arrival))

    def fail_overdue(self, everything: bool = False) -> None:
        """Fail every expectation older than DELIVERY_SECONDS (with `everything`, every one left)."""
        now = time.monotonic()
        for key, (acked, _expected) in list(self.pending.items()):
            if everything or now - acked > DELIVERY_SECONDS:
                del self.pending[key]
                kind, number = key
                what = f"message {number}" if kind == "message" else f"the member.added of joining chat {number}"
                name = "/api/events message.created" if kind == "message" else "/api/events member.added"
                self.report(name, acked, f"{what} did not arrive within {DELIVERY_SECONDS:.0f} s of its 201", now)

    def settle(self) -> None:
        """Stop taking expectations, give the pending ones their time, and fail those that did not come."""
        self.accepting = False
        while self.pending:
            self.fail_overdue()
            gevent.sleep(0.05)

    # What the stream delivers.

    def read(self, response) -> None:
        """The reader greenlet: parse Server-Sent Events until the stream ends."""
        fields: dict[str, str] = {}
        buffer = b""
        try:
            # Chunks come as the server sends them (an event each); lines end in LF or CRLF.
            for chunk in response.iter_content(chunk_size=4096):
                *lines, buffer = (buffer + chunk).split(b"\n")
                for raw in lines:
                    line = raw.removesuffix(b"\r").decode("utf-8")
                    if not line:
                        if "event" in fields or "data" in fields:
                            self.take(fields)
                        fields = {}
                    elif not line.startswith(":"):  # a comment (heartbeat) otherwise
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        fields[field] = f"{fields[field]}\n{value}" if field == "data" and field in fields else value
            if not self.closing:
                self.report("/api/events (stream)", time.monotonic(), "the server ended the stream")
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            if not self.closing:
                self.report("/api/events (stream)", time.monotonic(), f"reading the stream failed: {exc!r}")
        finally:
            self.accepting = False
            self.ready.set()  # nobody waits for a ready that will never come

    def take(self, fields: dict[str, str]) -> None:
        now = time.monotonic()
        kind = fields.get("event", "message")
        if kind in EPHEMERAL:  # typing and presence: no id, never stored, so nothing to count on
            try:
                data = json.loads(fields.get("data", ""))
                if "id" in fields:
                    raise Mismatch(f"it has an id: {fields}")
                expect_keys(data, EPHEMERAL[kind], f"{kind} data")
                if kind == "typing" and data["user_id"] == self.user_id:
                    raise Mismatch("my own typing came back to me")
            except (ValueError, Mismatch) as problem:
                self.report(f"/api/events {kind}", now, f"an ephemeral {kind} event: {problem}")
            return
        try:
            event_id = int(fields.get("id", ""))
            data = json.loads(fields.get("data", ""))
        except ValueError:
            self.report("/api/events (stream)", now, f"an event without a numeric id or JSON data: {fields}")
            return
        if event_id <= self.last_id:
            problem = f"{kind} event {event_id} came after event {self.last_id}: doubled, or out of order"
            self.report("/api/events (stream)", now, problem)
            return
        self.last_id = event_id
        if kind == "ready":
            if self.ready_id is not None or data != {"last_event_id": event_id}:
                self.report("/api/events (stream)", now, f"a second or malformed ready event {event_id}: {data}")
            self.ready_id = event_id
            self.ready.set()
            return
        if self.ready_id is None:
            self.report("/api/events (stream)", now, f"{kind} event {event_id} came before the ready event")
        self.seen[event_id] = (kind, data)
        self.order.append(event_id)
        try:
            if kind == "message.created":
                self.take_message(data, now)
            elif kind == "member.added" and isinstance(data, dict) and data.get("user", {}).get("id") == self.user_id:
                self.take_join(data, now)
        except Mismatch as problem:
            self.report(f"/api/events {kind}", now, f"event {event_id}: {problem}")

    def take_message(self, data, now: float) -> None:
        expect_keys(data, {"chat_id", "message"}, "message.created data")
        message = data["message"]
        expect_keys(message, MESSAGE_KEYS, "a message")
        message_id = expect_id(message["id"], "message id")
        expect_time(message["time"], f"message {message_id} time")
        expect_author(message["content"], message["sender_id"], f"message {message_id}")
        expect_conversation(message, f"message {message_id}")
        if message["reactions"] or message["thread"] is not None:
            raise Mismatch(f"new message {message_id} already has reactions or a thread: {message}")
        if message_id in self.messages:
            raise Mismatch(f"message.created for message {message_id} arrived twice")
        if data["chat_id"] not in self.chats:
            raise Mismatch(f"message {message_id} of chat {data['chat_id']}, which I never joined, arrived")
        self.messages[message_id] = (now, data["chat_id"], message["content"], message["sender_id"])
        waiting = self.pending.pop(("message", message_id), None)
        if waiting is not None:
            self._met_message(message_id, waiting[1], waiting[0])

    def take_join(self, data, now: float) -> None:
        expect_keys(data, {"chat_id", "user"}, "member.added data")
        chat_id = expect_id(data["chat_id"], "chat id")
        if chat_id in self.joined:
            raise Mismatch(f"my member.added for chat {chat_id} arrived twice")
        self.joined[chat_id] = now
        self.chats.add(chat_id)
        waiting = self.pending.pop(("member", chat_id), None)
        if waiting is not None:
            self.report("/api/events member.added", waiting[0], now=max(now, waiting[0]))


class Streams:
    """The open streams of this process's listeners, by user id: whom a send or an add must reach."""

    def __init__(self):
        self._trackers: dict[int, StreamTracker] = {}

    def register(self, tracker: StreamTracker) -> None:
        tracker.accepting = True
        self._trackers[tracker.user_id] = tracker

    def unregister(self, tracker: StreamTracker) -> None:
        tracker.accepting = False
        if self._trackers.get(tracker.user_id) is tracker:
            del self._trackers[tracker.user_id]

    def watching(self, chat_id: int) -> list[StreamTracker]:
        """The streams that already deliver this chat: ask before the send, tell them after its 201."""
        return [t for t in self._trackers.values() if t.accepting and chat_id in t.chats]

    def added(self, chat_id: int, user_id: int, acked: float) -> None:
        tracker = self._trackers.get(user_id)
        if tracker is not None:
            tracker.expect_join(chat_id, acked)


streams = Streams()


class ChatUser(FastHttpUser):
    """Registration, login and the checked reads that chatters and readers share."""

    abstract = True
    kind = ""
    think = (1.0, 3.0)
    listed_at_start = True  # others may pick this user for their chats as soon as it has registered

    def wait_time(self):
        options = self.environment.parsed_options
        scale = options.think_scale if options else 1.0
        return random.uniform(*self.think) * scale

    def on_start(self):
        if not is_loopback(self.host):
            log.error("refusing to load %s: this load test only targets loopback addresses", self.host)
            raise StopUser()
        self.username = f"{self.kind}-{RUN_TAG}-{next(_serial)}"
        self.user_id = None
        self.chats: list[int] = []
        # The history messages of the last page read in each chat, (id, content, sender): what this user replies to,
        # reacts to and opens threads of. Thread roots there with a summary, by chat.
        self.seen: dict[int, list[tuple[int, str, int]]] = {}
        self.roots: dict[int, list[tuple[int, str]]] = {}
        self.reacted: dict[tuple[int, str], int] = {}  # (message, emoji): chat, of my reactions still standing
        body = self.call(
            "POST",
            "/api/user/0",
            name="/api/user/{user_id}",
            expect=201,
            data={"name": self.username, "password": PASSWORD, "email": f"{self.username}@load.example"},
            check=self.check_session_started,
        )
        if body is None:
            raise StopUser()
        self.user_id = body["id"]
        if self.listed_at_start:
            directory.join(self.kind, self.user_id, self.username)

    def add_to_chat(self, chat_id: int, person: tuple[int, str]):
        """Add someone by id or by name; a listener among them must then hear of it on its stream."""
        user_id, name = person
        form = {"user_id": user_id} if random.random() < 0.5 else {"name": name}
        ok = self.call(
            "POST",
            f"/api/chats/{chat_id}/members",
            name="/api/chats/{chat_id}/members",
            expect=201,
            check=lambda body, _response: expect_ok(body),
            data=form,
        )
        if ok is not None:
            streams.added(chat_id, user_id, time.monotonic())
        return ok

    def call(self, method: str, path: str, *, name: str, expect: int | tuple[int, ...], check=None, **kwargs):
        """Send one request, fail it unless it has an expected status, a JSON body, and passes `check`.

        Returns the body, or None when the request failed.
        """
        expected = expect if isinstance(expect, tuple) else (expect,)
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as response:
            try:
                if response.status_code not in expected:
                    raise Mismatch(f"status {response.status_code}, expected {expect}: {snippet(response)}")
                if not response.headers.get("content-type", "").startswith("application/json"):
                    raise Mismatch(f"content-type {response.headers.get('content-type')!r} is not JSON")
                try:
                    body = response.json()
                except ValueError as exc:
                    raise Mismatch(f"body is not JSON ({exc}): {snippet(response)}") from None
                if check is not None:
                    check(body, response)
            except Mismatch as problem:
                response.failure(str(problem))
                return None
            response.success()
            return body

    def send(self, chat_id: int, content: str, refers_to: str | None = None, **extra) -> dict | None:
        """Send a message; every stream that already delivers the chat must then deliver it, exactly once.

        `extra` is `reply_to` or `thread_root_id`, and `refers_to` the text of the message it names: a 404 is right
        once that message's deletion was announced (None is returned then, as for a failure)."""
        watchers = streams.watching(chat_id)

        def created(body, response):
            if response.status_code == 404:
                if refers_to is None or not directory.was_withdrawn(refers_to):
                    raise Mismatch(f"404 for a send naming a message that was not deleted: {str(body)[:200]}")
                expect_error(body)
                return
            expect_sent(body)

        suffix = "".join(f" {key}" for key in extra)
        body = self.call(
            "POST",
            f"/api/chats/{chat_id}",
            name="/api/chats/{chat_id}" + suffix,
            expect=(201, 404) if extra else 201,
            check=created,
            data={"content": content, **extra},
        )
        if body is None or "id" not in body:
            return None
        acked = time.monotonic()
        for tracker in watchers:
            tracker.expect_message(body["id"], chat_id, content, self.user_id, acked)
        return body

    def react(self, chat_id: int, message_id: int, content: str) -> None:
        """Add a reaction to a message, or take back one of mine; the answer must show the change. A 404 is right
        once the message's deletion was announced."""
        emoji = random.choice(EMOJI)
        adding = (message_id, emoji) not in self.reacted

        def reactions(body, response):
            if response.status_code == 404:
                if not directory.was_withdrawn(content):
                    raise Mismatch(f"404 for a reaction to message {message_id}, which was not deleted: {body}")
                expect_error(body)
                return
            expect_keys(body, {"message_id", "reactions"}, "a message's reactions")
            if body["message_id"] != message_id:
                raise Mismatch(f"reactions of message {body['message_id']}, not {message_id}")
            expect_conversation({**EMPTY_CONVERSATION, "reactions": body["reactions"]}, f"message {message_id}")
            mine = next((r for r in body["reactions"] if r["emoji"] == emoji), None)
            if adding and (mine is None or not mine["me"]):
                raise Mismatch(f"my {emoji} on message {message_id} is not in its reactions: {body['reactions']}")
            if not adding and mine is not None and mine["me"]:
                raise Mismatch(f"my {emoji} on message {message_id} is still there: {body['reactions']}")

        body = self.call(
            "PUT" if adding else "DELETE",
            f"/api/chats/{chat_id}/messages/{message_id}/reactions/{quote(emoji)}",
            name="/api/chats/{chat_id}/messages/{message_id}/reactions/{emoji}",
            expect=(200, 404),
            check=reactions,
        )
        if body is not None and "reactions" in body:
            if adding:
                self.reacted[(message_id, emoji)] = chat_id
                while len(self.reacted) > REMEMBERED:
                    del self.reacted[next(iter(self.reacted))]
            else:
                self.reacted.pop((message_id, emoji), None)

    def react_to_something(self) -> None:
        """React to a message of a page read lately, or take a reaction of mine back."""
        if self.reacted and random.random() < 0.25:
            (message_id, _emoji), chat_id = random.choice(list(self.reacted.items()))
            known = {m[0]: m[1] for m in self.seen.get(chat_id, ())}
            if message_id in known:
                self.react(chat_id, message_id, known[message_id])
                return
        if not self.seen:
            return
        chat_id = random.choice(list(self.seen))
        if self.seen[chat_id]:
            message_id, content, _sender = random.choice(self.seen[chat_id])
            self.react(chat_id, message_id, content)

    def open_thread(self, chat_id: int, root_id: int, root_content: str, check=None) -> list[dict] | None:
        """GET a thread: its root and its newest replies, oldest first, all in that thread. A 404 is right once the
        root's deletion was announced (a root takes its replies with it)."""
        sent_at = time.monotonic()

        def thread(body, response):
            if response.status_code == 404:
                if not directory.was_withdrawn(root_content):
                    raise Mismatch(f"404 for the thread of message {root_id}, which was not deleted: {body}")
                expect_error(body)
                return
            expect_keys(body, {"root", "messages"}, "a thread")
            root, replies = body["root"], body["messages"]
            expect_keys(root, MESSAGE_KEYS, "a thread's root")
            expect_conversation(root, f"root {root_id}")
            if root["id"] != root_id or root["thread_root_id"] is not None:
                raise Mismatch(f"the thread of {root_id} has root {root['id']} in thread {root['thread_root_id']}")
            if not isinstance(replies, list) or len(replies) > THREAD_PAGE:
                raise Mismatch(f"a thread page should hold at most {THREAD_PAGE} replies: {str(replies)[:200]}")
            if replies and root["thread"] is None:
                raise Mismatch(f"root {root_id} has replies but no thread summary")
            previous = root_id
            for reply in replies:
                expect_keys(reply, MESSAGE_KEYS, "a reply in a thread")
                reply_id = expect_id(reply["id"], "reply id")
                expect_conversation(reply, f"reply {reply_id}")
                if reply["thread_root_id"] != root_id or reply_id <= previous:
                    raise Mismatch(f"reply {reply_id} is in thread {reply['thread_root_id']} after {previous}")
                previous = reply_id
                expect_author(reply["content"], reply["sender_id"], f"reply {reply_id}")
                if directory.deleted_before(reply_id, sent_at):
                    raise Mismatch(f"reply {reply_id} was served after its deletion was confirmed")
            if check is not None:
                check(replies)

        body = self.call(
            "GET",
            f"/api/chats/{chat_id}/messages/{root_id}/thread",
            name="/api/chats/{chat_id}/messages/{message_id}/thread",
            expect=(200, 404),
            check=thread,
        )
        return body["messages"] if body is not None and "messages" in body else None

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.client.cookiejar if c.name == name), None)

    def check_session_started(self, body, response) -> None:
        user_id = expect_created(body)
        if self.user_id is not None and user_id != self.user_id:
            raise Mismatch(f"logged in as {self.username} (id {self.user_id}) but got id {user_id}")
        if response.headers.get("location") != "/api/chats":
            raise Mismatch(f"Location should be /api/chats, got {response.headers.get('location')!r}")
        if self.cookie("user_id") != str(user_id) or not self.cookie("token"):
            raise Mismatch(f"session cookies not set: user_id={self.cookie('user_id')!r}")

    def relogin(self):
        """Log out, prove the old session is revoked, and log back in."""
        token = self.cookie("token")

        def logged_out(body, response):
            expect_ok(body)
            if response.headers.get("location") != "/api/login":
                raise Mismatch(f"Location should be /api/login, got {response.headers.get('location')!r}")
            if self.cookie("token") or self.cookie("user_id"):
                raise Mismatch("logout left the session cookies in place")

        if self.call("GET", "/api/logout", name="/api/logout", expect=200, check=logged_out) is None:
            return
        self.call(
            "GET",
            "/api/chats",
            name="/api/chats (revoked session)",
            expect=401,
            check=lambda body, _response: expect_error(body),
            headers={"Cookie": f"user_id={self.user_id}; token={token}"},
        )
        self.call(
            "POST",
            "/api/login",
            name="/api/login",
            expect=200,
            data={"name": self.username, "password": PASSWORD},
            check=self.check_session_started,
        )

    def list_chats(self, check=None) -> list[dict] | None:
        """GET /api/chats, checking shape and order, and that no chat this user belonged to has vanished."""
        known = set(self.chats)

        def listing(body, response):
            expect_keys(body, {"chats", "next_cursor"}, "the chat list")
            chats = body["chats"]
            if not isinstance(chats, list):
                raise Mismatch("chats should be a list")
            complete = body["next_cursor"] is None
            if not complete and len(chats) != CHAT_PAGE:
                raise Mismatch(f"a chat list page with a next_cursor should hold {CHAT_PAGE} chats, not {len(chats)}")
            previous_time = None
            for chat in chats:
                expect_keys(chat, CHAT_KEYS, "a chat")
                expect_id(chat["id"], "chat id")
                if chat["last_read_id"] is not None:
                    expect_id(chat["last_read_id"], f"chat {chat['id']} last_read_id")
                unread = expect_count(chat["unread_count"], f"chat {chat['id']} unread_count")
                mentioned = expect_count(chat["mention_count"], f"chat {chat['id']} mention_count")
                if mentioned > unread:
                    raise Mismatch(f"chat {chat['id']} counts {mentioned} mentions among {unread} unread messages")
                if chat["kind"] not in ("group", "direct") or chat["notify"] not in ("all", "mentions", "none"):
                    raise Mismatch(f"chat {chat['id']} has kind {chat['kind']!r} and notify {chat['notify']!r}")
                if chat["muted_until"] is not None:
                    expect_time(chat["muted_until"], f"chat {chat['id']} muted_until")
                empty = [chat[k] is None for k in ("last_message", "last_message_time", "sender_id")]
                if any(empty) and not all(empty):
                    raise Mismatch(f"chat {chat['id']} has only some last-message fields: {chat}")
                if chat["last_message"] is not None:
                    expect_time(chat["last_message_time"], f"chat {chat['id']} last_message_time")
                    expect_author(chat["last_message"], chat["sender_id"], f"chat {chat['id']} last_message")
                    # Empty chats sort by creation time, so only the chats with messages must be in time order.
                    if previous_time is not None and chat["last_message_time"] > previous_time:
                        raise Mismatch(f"chat {chat['id']} is listed after an older conversation")
                    previous_time = chat["last_message_time"]
            listed = {chat["id"] for chat in chats}
            if len(listed) != len(chats):
                raise Mismatch("a chat is listed twice")
            if complete and (missing := known - listed):
                raise Mismatch(f"chats {sorted(missing)[:5]} vanished from the list; nobody leaves chats in this test")
            if check is not None:
                check({chat["id"]: chat for chat in chats})

        body = self.call("GET", "/api/chats", name="/api/chats", expect=200, check=listing)
        if body is None:
            return None
        self.chats = [chat["id"] for chat in body["chats"]]
        return body["chats"]

    def read(self, chat_id: int, check=None, **cursor) -> list[dict] | None:
        """GET a page of a chat, checking order, cursors, authorship and that deleted messages stay deleted."""
        limit = cursor.setdefault("limit", HISTORY_PAGE)
        query = "&".join(f"{key}={value}" for key, value in cursor.items())
        sent_at = time.monotonic()

        def page(body, response):
            expect_keys(body, {"messages"}, "a page of messages")
            messages = body["messages"]
            if not isinstance(messages, list) or len(messages) > limit:
                raise Mismatch(f"expected at most {limit} messages, got {str(messages)[:200]}")
            previous = 0
            for message in messages:
                expect_keys(message, MESSAGE_KEYS, "a message")
                message_id = expect_id(message["id"], "message id")
                if message_id <= previous:
                    raise Mismatch(f"message {message_id} comes after message {previous}: not oldest first")
                previous = message_id
                if "before" in cursor and message_id >= cursor["before"]:
                    raise Mismatch(f"message {message_id} is not before {cursor['before']}")
                if "after" in cursor and message_id <= cursor["after"]:
                    raise Mismatch(f"message {message_id} is not after {cursor['after']}")
                if not isinstance(message["content"], str) or not isinstance(message["sender_id"], int):
                    raise Mismatch(f"message {message_id} has a malformed content or sender_id: {message}")
                expect_time(message["time"], f"message {message_id} time")
                expect_author(message["content"], message["sender_id"], f"message {message_id}")
                expect_conversation(message, f"message {message_id}")
                if message["thread_root_id"] is not None or directory.is_thread_reply(message_id):
                    raise Mismatch(f"message {message_id}, a reply in a thread, is in the chat's history")
                if directory.deleted_before(message_id, sent_at):
                    raise Mismatch(f"message {message_id} was served after its deletion was confirmed")
            if check is not None:
                check(messages)

        body = self.call("GET", f"/api/chats/{chat_id}?{query}", name="/api/chats/{chat_id}", expect=200, check=page)
        if body is None:
            return None
        if body["messages"]:
            self.seen[chat_id] = [(m["id"], m["content"], m["sender_id"]) for m in body["messages"]]
            self.roots[chat_id] = [(m["id"], m["content"]) for m in body["messages"] if m["thread"] is not None]
        return body["messages"]


class Chatter(ChatUser):
    """Creates chats, brings people in, talks, and reads back what it said."""

    weight = 3
    kind = "chatter"
    think = (0.2, 1.0)

    def on_start(self):
        super().on_start()
        self.seq = itertools.count(1)
        self.current: int | None = None
        # Chats this user created: the only ones it adds members to or renames, so it knows their exact state.
        self.members: dict[int, list[int] | None] = {}
        self.titles: dict[int, str | None] = {}
        # The newest message this user sent per chat, until a read (unread) or a listing (unlisted) confirms it.
        self.unread: dict[int, tuple[int, str]] = {}
        self.unlisted: dict[int, tuple[int, str]] = {}
        self.mine: list[tuple[int, int, str]] = []
        self.names: dict[int, str] = {}  # of the people this user added to its chats
        # What my messages carry, until a read shows them: the quote of the original (id, sender, text), and the
        # mentions (the ids, and whether @all).
        self.quoted: dict[int, tuple[int, int, str]] = {}
        self.mentioned: dict[int, tuple[list[int], bool]] = {}
        self.threads: list[tuple[int, int, str, int]] = []  # (chat, root, root's text, my reply)
        self.directs: dict[int, str] = {}  # my direct chats: the other person's name, their title for me
        self.create_chat()

    @task(1)
    def create_chat(self):
        title = f"{random.choice(WORDS)} {random.choice(WORDS)} {next(self.seq)}"

        def created(body, response):
            chat_id = expect_created(body)
            if response.headers.get("location") != f"/api/chats/{chat_id}":
                raise Mismatch(f"Location should be /api/chats/{chat_id}, got {response.headers.get('location')!r}")

        body = self.call("POST", "/api/chats", name="/api/chats", expect=201, check=created, data={"title": title})
        if body is None:
            return
        chat_id = body["id"]
        self.members[chat_id] = [self.user_id]
        self.titles[chat_id] = title
        self.chats.append(chat_id)
        self.current = chat_id
        for kind in ("reader", "chatter"):
            self.add_member(chat_id, kind)

    @task(1)
    def bring_someone_in(self):
        if self.members:
            kind = random.choice(("reader", "reader", "chatter", "listener"))
            self.add_member(random.choice(list(self.members)), kind)

    def add_member(self, chat_id: int, kind: str):
        members = self.members[chat_id]
        person = directory.pick(kind, set(members or ()) | {self.user_id})
        if person is None:
            return
        user_id = person[0]
        self.names[user_id] = person[1]
        ok = self.add_to_chat(chat_id, person)
        if members is not None:
            # A failed add may still have happened; stop judging this chat's member list.
            self.members[chat_id] = [*members, user_id] if ok is not None else None

    @task(1)
    def check_members(self):
        known = {chat_id: members for chat_id, members in self.members.items() if members is not None}
        if not known:
            return
        chat_id, expected = random.choice(list(known.items()))

        def members(body, response):
            expect_keys(body, {"members"}, "the member list")
            for member in body["members"]:
                expect_keys(member, {"id", "name", "avatar_url"}, "a member")
            got = [member["id"] for member in body["members"]]
            if got != expected:
                raise Mismatch(f"chat {chat_id} members should be {expected} in joining order, got {got}")

        self.call(
            "GET", f"/api/chats/{chat_id}/members", name="/api/chats/{chat_id}/members", expect=200, check=members
        )

        def presence(body, response):
            expect_keys(body, {"presence"}, "the presence list")
            asked = list(dict.fromkeys(expected[:100]))
            if [answer["user_id"] for answer in body["presence"]] != asked:
                raise Mismatch(f"presence of {asked} came back for {[a['user_id'] for a in body['presence']]}")
            for answer in body["presence"]:  # members all: never unknown
                if answer["state"] not in ("online", "idle", "offline"):
                    raise Mismatch(f"a member's presence is {answer['state']!r}")

        asked = {"user_ids": expected[:100]}
        self.call("GET", "/api/presence", name="/api/presence", expect=200, check=presence, params=asked)

    @task(12)
    def send_message(self):
        """Mostly plain messages; some posted in a thread, some replies, some with an @name or @all."""
        if self.current is None:
            return
        chat_id = self.current
        filler = " ".join(random.choices(WORDS, k=random.randint(1, 25)))
        roll = random.random()
        if roll < THREAD_SHARE and self.seen.get(chat_id):
            self.post_in_thread(chat_id, filler)
            return
        tag = f"m{self.user_id}.{next(self.seq)}"
        extra, refers_to, mentions = {}, None, None
        if roll < THREAD_SHARE + REPLY_SHARE and self.seen.get(chat_id):
            original_id, refers_to, original_sender = random.choice(self.seen[chat_id])
            extra["reply_to"] = original_id
        roll = random.random()
        members = [m for m in self.members.get(chat_id) or () if m != self.user_id and m in self.names]
        if roll < MENTION_ALL_SHARE:
            filler, mentions = f"@all {filler}", ([], True)
        elif roll < MENTION_ALL_SHARE + MENTION_SHARE and members:
            named = random.choice(members)
            filler, mentions = f"@{self.names[named]} {filler}", ([named], False)
        content = f"{tag} {filler}"
        if random.random() < TYPING_SHARE:
            self.start_typing(chat_id)
        body = self.send(chat_id, content, refers_to, **extra)
        if body is None:
            return
        self.unread[chat_id] = self.unlisted[chat_id] = (body["id"], content)
        self.mine.append((chat_id, body["id"], content))
        del self.mine[:-MY_RECENT_MESSAGES]
        if extra:
            self.quoted[body["id"]] = (original_id, original_sender, refers_to)
        if mentions is not None:
            self.mentioned[body["id"]] = mentions
        for pending in self.quoted, self.mentioned:
            while len(pending) > REMEMBERED:
                del pending[next(iter(pending))]

    def start_typing(self, chat_id: int) -> None:
        """Say so before a message, as a client does: 204 with no body (the send then stops it)."""
        path, name = f"/api/chats/{chat_id}/typing", "/api/chats/{chat_id}/typing"
        with self.client.post(path, name=name, data={"op": "start"}, catch_response=True) as answer:
            if answer.status_code != 204 or answer.content:
                answer.failure(f"status {answer.status_code}, expected 204 with no body: {snippet(answer)}")
            else:
                answer.success()

    def post_in_thread(self, chat_id: int, filler: str) -> None:
        """Post a reply in the thread of a message read lately; it stays out of the chat's history."""
        root_id, root_content, _sender = random.choice(self.seen[chat_id])
        content = f"m{self.user_id}.{next(self.seq)} {filler}"
        body = self.send(chat_id, content, root_content, thread_root_id=root_id)
        if body is None:
            return
        directory.posted_in_thread(body["id"])
        self.threads.append((chat_id, root_id, root_content, body["id"]))
        del self.threads[:-REMEMBERED]

    @task(1)
    def read_a_thread(self):
        """Open a thread I posted in: my reply is there, unless newer ones pushed it off the page."""
        if not self.threads:
            return
        chat_id, root_id, root_content, reply_id = random.choice(self.threads)

        def has_my_reply(replies):
            if any(reply["id"] == reply_id for reply in replies):
                return
            if len(replies) == THREAD_PAGE and replies[0]["id"] > reply_id:
                return
            raise Mismatch(f"my reply {reply_id} is missing from the thread of {root_id}")

        self.open_thread(chat_id, root_id, root_content, check=has_my_reply)

    @task(1)
    def list_threads(self):
        """GET /api/threads: well formed, and the thread I posted in last is followed (when all fit one page)."""
        latest = self.threads[-1] if self.threads else None

        def threads(body, response):
            expect_keys(body, {"threads"}, "the thread list")
            listed = set()
            for entry in body["threads"]:
                expect_keys(entry, {"chat_id", "root", "last_read_id", "unread_count"}, "a followed thread")
                expect_keys(entry["root"], MESSAGE_KEYS, "a followed thread's root")
                expect_conversation(entry["root"], f"root {entry['root']['id']}")
                expect_count(entry["unread_count"], f"thread {entry['root']['id']} unread_count")
                listed.add(entry["root"]["id"])
            # A full page may leave out a thread with older activity; a shorter one is every thread I follow.
            complete = len(body["threads"]) < THREAD_LIST
            if latest is not None and complete and latest[1] not in listed and not directory.was_withdrawn(latest[2]):
                raise Mismatch(f"the thread of {latest[1]}, where I posted, is not among those I follow")

        self.call("GET", "/api/threads", name="/api/threads", expect=200, check=threads)

    @task(2)
    def react_to_a_message(self):
        self.react_to_something()

    @task(1)
    def message_directly(self):
        """Open the direct chat with someone, and say something there: half as often as the task's weight says."""
        if random.random() < 0.5:
            return
        person = directory.pick(random.choice(("chatter", "reader", "listener")), {self.user_id})
        if person is None:
            return
        user_id, name = person
        statuses = []

        def opened(body, response):
            chat_id = expect_created(body)
            if response.headers.get("location") != f"/api/chats/{chat_id}":
                raise Mismatch(f"Location should be /api/chats/{chat_id}, got {response.headers.get('location')!r}")
            statuses.append(response.status_code)

        body = self.call(
            "POST", f"/api/direct/{user_id}", name="/api/direct/{user_id}", expect=(200, 201), check=opened
        )
        if body is None:
            return
        chat_id = body["id"]
        if statuses == [201]:
            streams.added(chat_id, user_id, time.monotonic())
        self.directs[chat_id] = name
        if chat_id not in self.chats:
            self.chats.append(chat_id)
        content = f"m{self.user_id}.{next(self.seq)} {' '.join(random.choices(WORDS, k=random.randint(1, 8)))}"
        sent = self.send(chat_id, content)
        if sent is not None:
            self.unread[chat_id] = self.unlisted[chat_id] = (sent["id"], content)
            self.mine.append((chat_id, sent["id"], content))
            del self.mine[:-MY_RECENT_MESSAGES]
            if random.random() < 0.5:
                self.current = chat_id

    def check_what_it_carries(self, message: dict) -> None:
        """My message as read back: the quote and the mentions it was sent with."""
        message_id = message["id"]
        quoted = self.quoted.pop(message_id, None)
        reply = message["reply_to"]
        if quoted is None and reply is not None:
            raise Mismatch(f"my message {message_id}, no reply, quotes {reply}")
        if quoted is not None:
            original_id, sender_id, text = quoted
            if reply is None or reply["id"] != original_id or reply["sender_id"] != sender_id:
                raise Mismatch(f"my reply {message_id} to {original_id} by {sender_id} quotes {reply}")
            gone = reply["deleted"] and directory.was_withdrawn(text)
            if not gone and reply["snippet"] != text[:SNIPPET]:
                raise Mismatch(f"my reply {message_id} quotes {reply['snippet']!r}, not {text[:SNIPPET]!r}")
        mentions, everyone = self.mentioned.pop(message_id, ([], False))
        if message["mentions"] != mentions or message["mentions_all"] != everyone:
            raise Mismatch(
                f"my message {message_id} should mention {mentions} (all: {everyone}), not "
                f"{message['mentions']} (all: {message['mentions_all']})"
            )

    @task(8)
    def read_current_chat(self):
        if self.current is None:
            return
        chat_id = self.current
        pending = self.unread.pop(chat_id, None)

        def shows_my_message(messages):
            if pending is None:
                return
            message_id, content = pending
            found = next((m for m in messages if m["id"] == message_id), None)
            if found is not None:
                if found["content"] != content or found["sender_id"] != self.user_id:
                    raise Mismatch(f"my message {message_id} came back as {found}")
                self.check_what_it_carries(found)
                return
            # Others may have written HISTORY_PAGE newer messages since; then it is simply off this page.
            if len(messages) == HISTORY_PAGE and messages[0]["id"] > message_id:
                return
            raise Mismatch(f"my message {message_id} in chat {chat_id} is missing from the next read")

        self.read(chat_id, check=shows_my_message)

    @task(5)
    def look_at_chat_list(self):
        unlisted, self.unlisted = self.unlisted, {}

        def shows_latest(chats_by_id):
            for chat_id, title in self.titles.items():
                listed = chats_by_id.get(chat_id)
                if title is not None and listed is not None and listed["title"] != title:
                    raise Mismatch(f"chat {chat_id} was renamed to {title!r} but is listed as {listed['title']!r}")
                if listed is not None and listed["kind"] != "group":
                    raise Mismatch(f"chat {chat_id}, which I created, is listed as {listed['kind']!r}")
            for chat_id, name in self.directs.items():
                listed = chats_by_id.get(chat_id)
                if listed is not None and (listed["kind"], listed["title"]) != ("direct", name):
                    raise Mismatch(
                        f"my direct chat {chat_id} with {name} is listed as {listed['kind']} {listed['title']!r}"
                    )
            for chat_id, (message_id, content) in unlisted.items():
                listed = chats_by_id.get(chat_id)
                if listed is None:
                    raise Mismatch(f"chat {chat_id}, where I just wrote, is not in my list")
                if listed["last_message"] == content and listed["sender_id"] == self.user_id:
                    continue
                self.explain_newer_last_message(chat_id, message_id, listed)

        chats = self.list_chats(check=shows_latest)
        if chats and random.random() < 0.3:
            # Open a chat from the list: usually the one with the latest activity.
            self.current = chats[0]["id"] if random.random() < 0.5 else random.choice(chats)["id"]

    def explain_newer_last_message(self, chat_id: int, message_id: int, listed: dict) -> None:
        """The list shows someone else's text as the last message: it must be newer than mine, or being deleted."""
        if directory.was_withdrawn(listed["last_message"]):
            return
        newer = self.read(chat_id, after=message_id, limit=FOLLOW_UP_PAGE)
        if newer is None:
            raise Mismatch(f"could not read chat {chat_id} to check its last message")
        if any(m["content"] == listed["last_message"] and m["sender_id"] == listed["sender_id"] for m in newer):
            return
        if directory.was_withdrawn(listed["last_message"]):
            return
        raise Mismatch(
            f"chat {chat_id} lists last message {listed['last_message'][:40]!r} by {listed['sender_id']}, "
            f"which is not my message {message_id} nor any newer one"
        )

    @task(1)
    def rename_chat(self):
        if not self.titles:
            return
        chat_id = random.choice(list(self.titles))
        title = f"{random.choice(WORDS)} {random.choice(WORDS)} {next(self.seq)}"
        ok = self.call(
            "PUT",
            f"/api/chats/{chat_id}",
            name="/api/chats/{chat_id}",
            expect=200,
            check=lambda body, _response: expect_ok(body),
            data={"title": title},
        )
        # A failed rename may still have happened; then the title is unknown.
        self.titles[chat_id] = title if ok is not None else None

    @task(1)
    def delete_message(self):
        if not self.mine:
            return
        chat_id, message_id, content = self.mine.pop(random.randrange(len(self.mine)))
        directory.withdraw(content)
        for pending in (self.unread, self.unlisted):
            if pending.get(chat_id, (None,))[0] == message_id:
                del pending[chat_id]
        ok = self.call(
            "DELETE",
            f"/api/chats/{chat_id}?id={message_id}",
            name="/api/chats/{chat_id}",
            expect=200,
            check=lambda body, _response: expect_ok(body),
        )
        if ok is not None:
            directory.confirm_deleted(message_id)

    @task(1)
    def log_out_and_in(self):
        self.relogin()


class Reader(ChatUser):
    """Never writes: lists its chats and pages back through what others wrote there."""

    weight = 2
    kind = "reader"
    think = (0.5, 1.5)

    def on_start(self):
        super().on_start()
        self.chat_id: int | None = None
        self.oldest: int | None = None

    def not_mine(self, messages):
        for message in messages:
            if message["sender_id"] == self.user_id:
                raise Mismatch(f"message {message['id']} claims to be from me, a reader who never writes")

    @task(3)
    def look_at_chat_list(self):
        chats = self.list_chats()
        if chats and (self.chat_id is None or random.random() < 0.3):
            self.open_chat(random.choice(chats)["id"])

    def open_chat(self, chat_id: int):
        self.chat_id = chat_id
        messages = self.read(chat_id, check=self.not_mine)
        self.oldest = messages[0]["id"] if messages else None

    @task(6)
    def page_back(self):
        if self.chat_id is None:
            return
        if self.oldest is None:
            self.open_chat(self.chat_id)
            return
        messages = self.read(self.chat_id, check=self.not_mine, before=self.oldest)
        # A short page means the start of the chat: go back to the newest messages next time.
        self.oldest = messages[0]["id"] if messages and len(messages) == HISTORY_PAGE else None

    @task(1)
    def react_to_a_message(self):
        self.react_to_something()

    @task(1)
    def read_a_thread(self):
        """Open the thread of a message with replies, seen on a page lately."""
        roots = [(chat_id, root) for chat_id, found in self.roots.items() for root in found]
        if roots:
            chat_id, (root_id, content) = random.choice(roots)
            self.open_thread(chat_id, root_id, content, check=self.not_mine)


class Listener(ChatUser):
    """Holds an event stream open, talks in its chats, and checks that everything sent there arrives on it once.

    It creates a chat of its own before it opens the stream and lets others find it only once the stream is ready,
    so every chat it joins later announces itself on the stream with a member.added first. It brings other
    listeners into its chat, and chatters bring it into theirs, so most messages fan out to several streams.
    """

    weight = 1
    kind = "listener"
    think = (0.5, 1.5)
    listed_at_start = False

    def on_start(self):
        self.tracker: StreamTracker | None = None
        self.stream = self.reader = self.session = None
        super().on_start()
        self.seq = itertools.count(1)
        body = self.call(
            "POST",
            "/api/chats",
            name="/api/chats",
            expect=201,
            check=lambda body, _response: expect_created(body),
            data={"title": f"live {next(self.seq)}"},
        )
        if body is None:
            raise StopUser()
        self.own_chat = body["id"]
        self.members = {self.user_id}
        self.tracker = StreamTracker(self, {self.own_chat})
        self.open_stream()
        streams.register(self.tracker)
        directory.join(self.kind, self.user_id, self.username)

    def open_stream(self):
        """GET /api/events as Server-Sent Events, read by a greenlet of its own; wait for its ready event."""
        self.session = HttpSession(self.host, self.environment.events.request, self)
        cookie = f"user_id={self.cookie('user_id')}; token={self.cookie('token')}"
        with self.session.get(
            "/api/events",
            name="/api/events",
            headers={"Cookie": cookie, "Accept": "text/event-stream"},
            stream=True,
            catch_response=True,
            timeout=(5, STREAM_READ_TIMEOUT),
        ) as response:
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                response.failure(f"status {response.status_code}, content-type {content_type!r}: not a stream")
                opened = False
            else:
                response.success()
                opened = True
        if not opened:
            raise StopUser()
        self.stream = response
        self.reader = gevent.spawn(self.tracker.read, response)
        started = time.monotonic()
        if not self.tracker.ready.wait(READY_SECONDS) or self.tracker.ready_id is None:
            self.tracker.report("/api/events (stream)", started, f"no ready event within {READY_SECONDS:.0f} s")
            raise StopUser()

    def on_stop(self):
        tracker = self.tracker
        if tracker is None:
            return
        streams.unregister(tracker)
        tracker.settle()
        tracker.closing = True
        if self.reader is not None:
            self.reader.kill(timeout=5)  # out of its read first: the socket is closed under no one
        if self.stream is not None:
            self.stream.close()
        if self.session is not None:
            self.session.close()

    @task(10)
    def send_message(self):
        self.tracker.fail_overdue()
        # Mostly in its own chat, whose other members are listeners; sometimes where chatters brought it in.
        chat_id = self.own_chat if random.random() < 0.7 else random.choice(sorted(self.tracker.chats))
        filler = " ".join(random.choices(WORDS, k=random.randint(1, 12)))
        self.send(chat_id, f"m{self.user_id}.{next(self.seq)} {filler}")

    @task(2)
    def check_deliveries(self):
        self.tracker.fail_overdue()

    @task(1)
    def bring_listener_in(self):
        person = directory.pick("listener", self.members)
        if person is None:
            return
        if self.add_to_chat(self.own_chat, person) is not None:
            self.members.add(person[0])

    @task(1)
    def compare_with_replay(self):
        """The JSON form of GET /api/events from an id the stream saw must list exactly what the stream delivered."""
        tracker = self.tracker
        after = random.choice([tracker.ready_id, *tracker.order[-REPLAY_COMPARED:]])
        upto = tracker.last_id
        delivered = {event_id: tracker.seen[event_id] for event_id in tracker.order if after < event_id <= upto}

        def same_as_stream(body, response):
            expect_keys(body, {"events", "last_event_id"}, "an event batch")
            through = expect_id(body["last_event_id"], "last_event_id")
            previous = after
            replayed = {}
            for event in body["events"]:
                expect_keys(event, {"id", "type", "data"}, "an event")
                event_id = expect_id(event["id"], "event id")
                if event_id <= previous:
                    raise Mismatch(f"event {event_id} is listed after event {previous}")
                previous = event_id
                replayed[event_id] = (event["type"], event["data"])
            if through < previous:
                raise Mismatch(f"last_event_id {through} is older than event {previous} in the batch")
            limit = min(upto, through)
            streamed = {key: value for key, value in delivered.items() if key <= limit}
            replayed = {key: value for key, value in replayed.items() if key <= limit}
            if replayed != streamed:
                only_stream = sorted(set(streamed) - set(replayed))[:5]
                only_json = sorted(set(replayed) - set(streamed))[:5]
                differ = sorted(k for k in set(streamed) & set(replayed) if streamed[k] != replayed[k])[:5]
                raise Mismatch(
                    f"after event {after}, through {limit}: only on the stream {only_stream}, only in the JSON "
                    f"{only_json}, different {differ}"
                )

        self.call(
            "GET",
            f"/api/events?last_event_id={after}",
            name="/api/events?last_event_id={id}",
            expect=200,
            check=same_as_stream,
            headers={"Accept": "application/json"},
        )
