"""Several hosts: two chat-server processes over one PostgreSQL database behind HAProxy (tests/cluster.py), used
through the proxy. HAProxy names the backend that answered in `X-Served-By`, which is how these tests prove
that work landed on both hosts and that what one host stored, the other one serves. The uploads, typing and presence
tests address each host directly instead, so that which host does what is not left to round-robin."""

import contextlib
import hashlib
import io
import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import pytest
import redis
from PIL import Image

from chat_server.streams.pubsub import EPHEMERAL_CHANNEL
from tests.cluster import HAPROXY, POSTGRES_URL, REDIS_URL, Cluster, answers, fresh_database, running_cluster
from tests.sse import Stream

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"a", "b"}
GUESSES_ALLOWED = 3
OPTIONS = (
    # Rate-limit counts shared by both hosts; test_live_http registers many users from 127.0.0.1, and the address
    # limit on failed logins would carry over between runs in Redis.
    *("--rate-limit-storage", REDIS_URL, "--register-rate", "off", "--login-address-rate", "off"),
    *("--login-rate", f"{GUESSES_ALLOWED}/60"),
    # A heartbeat well inside HAProxy's 30 s server timeout keeps idle streams open through the proxy.
    *("--event-heartbeat", "1"),
    # The rehearsal adds people who never met to chats, as on a private server.
    *("--default-who-can-add-me", "anyone"),
    # Uploaded bytes in the shared database, not in a directory of each host's own, so either host serves any file.
    # The upload rate is counted per user id in Redis, which outlives the fresh database of each run (whose ids start
    # at 1 again): off, so that runs in a row are not refused.
    *("--uploads", "database", "--upload-rate", "off"),
)
BLACK_BOX_TIMEOUT_SECONDS = 120
RETRY_PAUSE_SECONDS = 0.05
# Presence in seconds, not minutes (the defaults are 60 and 30): a host silent for 3 s is dead. Each host says it is
# alive, and sweeps for the dead, every third of the shorter of the two (streams/presence.py).
PRESENCE_TIMEOUT, PRESENCE_GRACE = 3, 1
PRESENCE_SWEEP = min(PRESENCE_TIMEOUT, PRESENCE_GRACE) / 3
SHORT_PRESENCE = ("--presence-timeout", str(PRESENCE_TIMEOUT), "--presence-grace", str(PRESENCE_GRACE))


def require(available: bool, reason: str) -> None:
    """Skip when a part is missing, except in `tox -e cluster` under CI, which sets CHAT_REQUIRE_CLUSTER from CI."""
    if available:
        return
    if os.environ.get("CHAT_REQUIRE_CLUSTER"):
        pytest.fail(f"{reason} (CHAT_REQUIRE_CLUSTER is set, so this is not skipped)")
    pytest.skip(reason)


@contextlib.contextmanager
def rehearsal(*options: str) -> Iterator[Cluster]:
    """Two hosts behind HAProxy over a fresh database, started with OPTIONS and then `options`."""
    require(HAPROXY.exists(), f"{HAPROXY} is missing; run tests/install_haproxy.sh or `tox -e cluster`")
    require(answers("127.0.0.1", 6379), "no Redis on 127.0.0.1:6379 to share rate-limit counts")
    try:
        database_url = fresh_database()
    except psycopg2.OperationalError as exc:
        require(False, f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    with running_cluster(database_url, *OPTIONS, *options) as running:
        yield running


@pytest.fixture
def cluster():
    with rehearsal() as running:
        yield running


@pytest.fixture(params=["auto", REDIS_URL], ids=["notify", "redis"])
def pubsub(request) -> str:
    """How typing and presence travel between the hosts (--pubsub): PostgreSQL's NOTIFY, the default there, or Redis."""
    return request.param


@pytest.fixture
def cluster_over_pubsub(pubsub):
    with rehearsal("--pubsub", pubsub) as running:
        yield running


@pytest.fixture
def cluster_with_short_presence():
    """Presence that notices a dead host in seconds. Every test starts a cluster of its own, so killing a host here
    takes none away from another test."""
    with rehearsal(*SHORT_PRESENCE) as running:
        yield running


@pytest.fixture
def clients():
    """HTTP clients and streams a test opened, closed after it."""
    opened: list = []
    yield opened
    for client in opened:
        client.close()


@dataclass
class User:
    id: int
    name: str
    client: httpx.Client

    @property
    def cookies(self) -> dict:
        return dict(self.client.cookies)

    def send(self, chat_id: int, content: str, key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.client.post(f"/chats/{chat_id}", data={"content": content}, headers=headers)

    def history(self, chat_id: int) -> httpx.Response:
        return self.client.get(f"/chats/{chat_id}", params={"limit": 1000})

    def new_chat(self, *members: "User") -> int:
        chat_id = self.client.post("/chats", data={"title": f"chat of {self.name}"}).json()["id"]
        for member in members:
            assert self.client.post(f"/chats/{chat_id}/members", data={"user_id": member.id}).status_code == 201
        return chat_id


def register(cluster: Cluster, clients: list) -> User:
    # Unique across runs: the failed-login counts in Redis outlive the database.
    name = f"host-{uuid.uuid4().hex[:12]}"
    client = httpx.Client(base_url=cluster.api_url, timeout=10)
    clients.append(client)
    response = client.post("/user/0", data={"name": name, "password": "long enough", "email": f"{name}@example.com"})
    assert response.status_code == 201, response.text
    return User(response.json()["id"], name, client)


def served_by(response: httpx.Response) -> str:
    return response.headers["x-served-by"]


def via(backend: str, request) -> httpx.Response:
    """Repeat a read until the backend named answers it; round-robin makes that the first or second try."""
    for _ in range(10):
        response = request()
        if served_by(response) == backend:
            return response
    raise AssertionError(f"10 requests in a row did not reach backend {backend}")


def direct(cluster: Cluster, backend: str, user: User, clients: list) -> httpx.Client:
    """A client for one host itself, not the proxy, with the user's session (both hosts know it: one database)."""
    client = httpx.Client(base_url=cluster.backends[backend].api_url, cookies=user.cookies, timeout=10)
    clients.append(client)
    return client


def message_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [message["id"] for message in response.json()["messages"]]


def streams_on_each_backend(cluster: Cluster, user: User, clients: list) -> dict[str, Stream]:
    """Open streams through the proxy until there is one on every backend; each has replayed and gone live."""
    streams: dict[str, Stream] = {}
    for _ in range(10):
        stream = Stream(cluster.api_url, user.cookies)
        clients.append(stream)
        assert stream.response.status_code == 200
        stream.ready()
        streams.setdefault(served_by(stream.response), stream)
        if set(streams) == BACKENDS:
            return streams
    raise AssertionError("10 streams in a row landed on one backend")


def streamed_message_ids(stream: Stream, wanted: set[int], already: list[int] = ()) -> list[int]:
    """Every message id the stream hands out, after `already`, until all of `wanted` have come."""
    received = list(already)
    while not wanted <= set(received):
        event = stream.next()
        if event.kind == "message.created":
            received.append(event.data["message"]["id"])
    return received


def test_black_box_api_tests_pass_through_the_proxy(cluster, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={tmp_path}", "tests/test_live_http.py"],
        cwd=ROOT,
        env={**os.environ, "CHAT_TEST_SERVER_URL": cluster.url},
        capture_output=True,
        text=True,
        timeout=BLACK_BOX_TIMEOUT_SECONDS,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    answered = {name: int(row["hrsp_2xx"]) for name, row in cluster.stats().items()}
    assert all(count > 0 for count in answered.values()), answered


def test_users_on_different_backends_read_each_others_messages(cluster, clients):
    owner, *others = [register(cluster, clients) for _ in range(4)]
    chat_id = owner.new_chat(*others)
    users = [owner, *others]

    def chat(user: User) -> list[tuple[int, str, str]]:
        """Read, then answer, eight times; (message id, backend that stored it, backend of the read before)."""
        sent = []
        for turn in range(8):
            read = user.history(chat_id)
            assert read.status_code == 200, read.text
            response = user.send(chat_id, f"{user.name} turn {turn}")
            assert response.status_code == 201, response.text
            sent.append((response.json()["id"], served_by(response), served_by(read)))
        return sent

    with ThreadPoolExecutor(len(users)) as pool:
        sent = [entry for entries in pool.map(chat, users) for entry in entries]
    assert {backend for _, backend, _ in sent} == BACKENDS
    assert {backend for _, _, backend in sent} == BACKENDS
    everything = sorted(message_id for message_id, _, _ in sent)
    for reader, backend in itertools.product(users, sorted(BACKENDS)):
        assert message_ids(via(backend, lambda reader=reader: reader.history(chat_id))) == everything


def test_failed_logins_are_counted_across_both_backends_in_redis(cluster, clients):
    victim = register(cluster, clients)
    with httpx.Client(base_url=cluster.api_url, timeout=10) as guesser:
        guess = {"name": victim.name}
        guesses = [
            guesser.post("/login", data={**guess, "password": f"wrong guess {n}"}) for n in range(GUESSES_ALLOWED)
        ]
        refused = guesser.post("/login", data={**guess, "password": "one more guess"})
    assert [response.status_code for response in guesses] == [400] * GUESSES_ALLOWED
    assert {served_by(response) for response in guesses} == BACKENDS
    assert refused.status_code == 429


def test_get_events_stream_on_each_backend_sees_every_message_sent_through_both(cluster, clients):
    sender, reader = register(cluster, clients), register(cluster, clients)
    chat_id = sender.new_chat(reader)
    streams = streams_on_each_backend(cluster, reader, clients)
    responses = [sender.send(chat_id, f"message {n}") for n in range(20)]
    assert [response.status_code for response in responses] == [201] * 20
    assert {served_by(response) for response in responses} == BACKENDS
    sent = [response.json()["id"] for response in responses]
    for stream in streams.values():
        assert streamed_message_ids(stream, set(sent)) == sent


@dataclass(frozen=True)
class Attempt:
    what: str
    started: float
    finished: float
    status: int | None  # None: the request got no answer at all
    backend: str | None
    replayed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status in (200, 201)


class Traffic:
    """Users chatting in one chat as fast as they can: send, then read. Each send carries an Idempotency-Key and is
    retried with it until a 201 acknowledges it, so a send whose answer was lost when a host died is stored once."""

    def __init__(self, chat_id: int):
        self.chat_id = chat_id
        self.attempts: list[Attempt] = []
        self.acknowledged: dict[str, int] = {}
        self.stop = threading.Event()

    def chat(self, user: User) -> None:
        for turn in itertools.count():
            if self.stop.is_set():
                return
            key = f"{user.name}-{turn}"
            self.acknowledged[key] = self._send_until_acknowledged(user, key, f"{user.name} says {turn}")
            self._attempt("read", lambda: user.client.get(f"/chats/{self.chat_id}", params={"limit": 10}))

    def _send_until_acknowledged(self, user: User, key: str, content: str) -> int:
        for _ in range(100):
            response = self._attempt("send", lambda: user.send(self.chat_id, content, key))
            if response is not None and response.status_code == 201:
                return response.json()["id"]
            time.sleep(RETRY_PAUSE_SECONDS)
        answer = "no answer" if response is None else f"{response.status_code} {response.text}"
        raise AssertionError(f"the send {key} was never acknowledged; the last try got {answer}")

    def _attempt(self, what: str, request) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = request()
        except httpx.TransportError:
            self.attempts.append(Attempt(what, started, time.monotonic(), None, None))
            return None
        replayed = response.headers.get("idempotent-replayed") == "true"
        backend = response.headers.get("x-served-by")
        self.attempts.append(Attempt(what, started, time.monotonic(), response.status_code, backend, replayed))
        return response

    def wait_for(self, acknowledged: int, workers: list[Future], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged:
            for worker in workers:
                if worker.done():
                    worker.result()  # raises what went wrong in it
                    raise AssertionError("a user stopped chatting")
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} sends acknowledged in {timeout} s"
            time.sleep(0.02)


def test_kill_a_backend_mid_scenario_loses_no_acknowledged_message_and_no_event(cluster, clients):
    reader, *senders = [register(cluster, clients) for _ in range(4)]
    chat_id = senders[0].new_chat(reader, *senders[1:])
    streams = streams_on_each_backend(cluster, reader, clients)
    traffic = Traffic(chat_id)
    with ThreadPoolExecutor(len(senders)) as pool:
        workers = [pool.submit(traffic.chat, sender) for sender in senders]
        traffic.wait_for(30, workers)
        killed_at = time.monotonic()
        cluster.kill("a")
        down_at = cluster.wait_for_status("a", "DOWN")
        traffic.wait_for(len(traffic.acknowledged) + 60, workers)
        traffic.stop.set()
        for worker in workers:
            worker.result()

    after_down = [attempt for attempt in traffic.attempts if attempt.started > down_at]
    assert len(after_down) >= 60
    assert [attempt for attempt in after_down if not attempt.succeeded or attempt.backend != "b"] == []

    acknowledged = sorted(traffic.acknowledged.values())
    assert message_ids(reader.history(chat_id)) == acknowledged  # each once: retries stored nothing new

    assert streams["a"].ended.wait(10), "the stream on the killed backend is still open"
    before_kill = [event for event in streams["a"].drain() if event.id is not None]
    resumed = Stream(cluster.api_url, reader.cookies, last_event_id=before_kill[-1].id)
    clients.append(resumed)
    assert served_by(resumed.response) == "b"
    already = [event.data["message"]["id"] for event in before_kill if event.kind == "message.created"]
    assert sorted(streamed_message_ids(resumed, set(acknowledged), already)) == acknowledged
    assert sorted(streamed_message_ids(streams["b"], set(acknowledged))) == acknowledged

    report_the_kill(traffic.attempts, killed_at, down_at)


def report_the_kill(attempts: list[Attempt], killed_at: float, down_at: float) -> None:
    """What the kill cost, for `pytest -rP`: the requests in flight or sent before HAProxy noticed."""
    in_flight = [a for a in attempts if a.started < killed_at < a.finished]
    window = [a for a in attempts if killed_at <= a.started <= down_at]
    after = [a for a in attempts if a.started > down_at]
    failures = [(a.what, a.status, a.backend) for a in attempts if not a.succeeded]
    print(
        f"HAProxy marked the killed backend DOWN {down_at - killed_at:.3f} s after SIGKILL. "
        f"In flight at the kill: {len(in_flight)} requests, {sum(not a.succeeded for a in in_flight)} failed. "
        f"Started before it was marked down: {len(window)}, {sum(not a.succeeded for a in window)} failed. "
        f"After: {len(after)}, {sum(not a.succeeded for a in after)} failed. "
        f"Sends answered from the idempotency record on retry: {sum(a.replayed for a in attempts)}. "
        f"Every failure (what, status or None for no answer, backend): {failures}"
    )


def stream_on(cluster: Cluster, backend: str, user: User, clients: list) -> Stream:
    """A stream on one host itself, not through the proxy, that has replayed and gone live."""
    stream = Stream(cluster.backends[backend].api_url, user.cookies)
    clients.append(stream)
    assert stream.response.status_code == 200
    stream.ready()
    return stream


@contextlib.contextmanager
def overheard(cluster: Cluster, pubsub: str) -> Iterator[Callable[[Callable[[dict], bool]], dict]]:
    """Listen where the hosts publish typing and presence (PostgreSQL's NOTIFY, or Redis under --pubsub redis://), to
    show which one carried a message; yields `heard(wanted)`, the first message heard there that `wanted` accepts."""
    if pubsub.startswith("redis://"):
        with contextlib.closing(psycopg2.connect(cluster.database_url)) as database, database.cursor() as cursor:
            cursor.execute("SELECT value FROM deployment WHERE key = 'channel'")  # the deployment's own channel
            (channel,) = cursor.fetchone()
        assert channel.startswith(f"{EPHEMERAL_CHANNEL}_")
        subscription = redis.Redis.from_url(REDIS_URL).pubsub()
        subscription.subscribe(channel)
        assert subscription.get_message(timeout=5)["type"] == "subscribe"

        def payload(timeout: float) -> str | None:
            message = subscription.get_message(ignore_subscribe_messages=True, timeout=timeout)
            return message and message["data"].decode()

        connection = subscription
    else:
        listener = psycopg2.connect(cluster.database_url)
        listener.autocommit = True
        listener.cursor().execute(f"LISTEN {EPHEMERAL_CHANNEL}")

        def payload(timeout: float) -> str | None:
            if not listener.notifies and select.select([listener], [], [], timeout)[0]:
                listener.poll()
            return listener.notifies.pop(0).payload if listener.notifies else None

        connection = listener

    def heard(wanted: Callable[[dict], bool], timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            text = payload(left)
            if text is not None and wanted(message := json.loads(text)):
                return message
        raise AssertionError(f"nothing of the kind went over {pubsub} within {timeout} s")

    with contextlib.closing(connection):
        yield heard


def test_typing_through_host_a_reaches_a_stream_on_host_b(cluster_over_pubsub, pubsub, clients):
    cluster = cluster_over_pubsub
    alice, bob = register(cluster, clients), register(cluster, clients)
    chat_id = alice.new_chat(bob)
    alice_on_a = direct(cluster, "a", alice, clients)
    to_bob = stream_on(cluster, "b", bob, clients)

    with overheard(cluster, pubsub) as heard:
        started_at = time.monotonic()
        answer = alice_on_a.post(f"/chats/{chat_id}/typing", data={"op": "start"})
        started = to_bob.next_ephemeral("typing")
        took = time.monotonic() - started_at
        carried = heard(lambda message: (message.get("k"), message.get("chat"), message.get("user")) == (
            "typing", chat_id, alice.id))  # fmt: skip

    assert answer.status_code == 204, answer.text
    assert (started.id, started.data) == (None, {"chat_id": chat_id, "user_id": alice.id, "active": True,
                                                 "expires_in_ms": 8000, "resend_in_ms": 5000})  # fmt: skip
    assert json.loads(carried["data"]) == started.data
    assert alice_on_a.post(f"/chats/{chat_id}/typing", data={"op": "stop"}).status_code == 204
    assert to_bob.next_ephemeral("typing").data["active"] is False
    over = "Redis" if pubsub.startswith("redis://") else "PostgreSQL NOTIFY"
    print(f"typing went from host a to a stream on host b over {over} in {took * 1000:.1f} ms (POST to arrival)")


def test_a_killed_hosts_users_go_offline_on_the_other_host_within_the_presence_timeout(
    cluster_with_short_presence, clients
):
    cluster = cluster_with_short_presence
    carol, dave = register(cluster, clients), register(cluster, clients)
    carol.new_chat(dave)
    to_dave = stream_on(cluster, "a", dave, clients)
    stream_on(cluster, "b", carol, clients)
    assert to_dave.presence_of(carol.id) == {"user_id": carol.id, "state": "online", "status_text": ""}

    killed_at = time.monotonic()
    cluster.kill("b")
    allowed = PRESENCE_TIMEOUT + PRESENCE_GRACE + 2 * PRESENCE_SWEEP
    offline = to_dave.presence_of(carol.id, timeout=allowed)
    took = time.monotonic() - killed_at

    assert offline == {"user_id": carol.id, "state": "offline", "status_text": ""}
    looked_up = direct(cluster, "a", dave, clients).get("/presence", params={"user_ids": f"{carol.id},{dave.id}"})
    assert looked_up.status_code == 200, looked_up.text
    assert looked_up.json()["presence"] == [
        {"user_id": carol.id, "state": "offline", "status_text": ""},
        {"user_id": dave.id, "state": "online", "status_text": ""},
    ]
    print(
        f"With --presence-timeout {PRESENCE_TIMEOUT} --presence-grace {PRESENCE_GRACE} (a sweep every "
        f"{PRESENCE_SWEEP:.2f} s), a stream on host a heard that the user of the killed host b went offline "
        f"{took:.2f} s after SIGKILL (allowed: {allowed:.2f} s)."
    )


def photo_png(width: int, height: int) -> bytes:
    """A PNG with a gradient, so that its thumbnail is really scaled down and not one flat colour."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_upload_through_one_host_is_downloaded_and_attached_through_the_other(cluster, clients):
    sender, reader = register(cluster, clients), register(cluster, clients)
    chat_id = sender.new_chat(reader)
    sender_on_a, reader_on_b = direct(cluster, "a", sender, clients), direct(cluster, "b", reader, clients)
    sender_on_b, reader_on_a = direct(cluster, "b", sender, clients), direct(cluster, "a", reader, clients)
    picture = photo_png(640, 480)

    stored = sender_on_a.post("/uploads", files={"file": ("photo.png", picture, "image/png")})

    assert stored.status_code == 201, stored.text
    assert "x-served-by" not in stored.headers  # host a itself answered, not HAProxy
    upload = stored.json()
    assert upload == {
        "id": upload["id"],
        "name": "photo.png",
        "content_type": "image/png",
        "size": len(picture),
        "sha256": hashlib.sha256(picture).hexdigest(),
        "url": f"/api/uploads/{upload['id']}/photo.png",
        "width": 640,
        "height": 480,
        "thumbnail_url": f"/api/uploads/{upload['id']}/thumbnail",
    }
    # Host b serves the uploader the bytes host a stored, before any message carries them.
    own = sender_on_b.get(f"/uploads/{upload['id']}")
    assert own.status_code == 200, own.text
    assert own.content == picture

    sent = sender_on_a.post(f"/chats/{chat_id}", data={"content": "from host a", "attachments": str(upload["id"])})
    assert sent.status_code == 201, sent.text

    history = reader_on_b.get(f"/chats/{chat_id}")
    assert history.status_code == 200, history.text
    [message] = history.json()["messages"]
    assert (message["id"], message["content"], message["sender_id"]) == (sent.json()["id"], "from host a", sender.id)
    assert message["attachments"] == [{key: upload[key] for key in upload if key != "sha256"}]

    downloaded = reader_on_b.get(upload["url"].removeprefix("/api"))
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.content == picture
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["etag"] == f'"{upload["sha256"]}"'

    thumbnails = {"a": reader_on_a.get(upload["thumbnail_url"].removeprefix("/api"))}
    thumbnails["b"] = reader_on_b.get(upload["thumbnail_url"].removeprefix("/api"))
    assert [response.status_code for response in thumbnails.values()] == [200, 200]
    assert thumbnails["a"].content == thumbnails["b"].content
    assert thumbnails["b"].headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumbnails["b"].content)) as shown:
        assert (shown.format, shown.size) == ("WEBP", (400, 300))


def test_a_file_of_several_database_chunks_stored_on_one_host_is_served_whole_and_in_ranges_by_the_other(
    cluster, clients
):
    owner = register(cluster, clients)
    on_a, on_b = direct(cluster, "a", owner, clients), direct(cluster, "b", owner, clients)
    # Three and a bit of the database store's 256 KiB chunks (files/stores.py), and no type a sniffer would name.
    data = bytes(range(256)) * 3 * 1024 + b"tail"

    stored = on_b.post("/uploads", files={"file": ("blob.bin", data, "application/octet-stream")})

    assert stored.status_code == 201, stored.text
    upload = stored.json()
    assert (upload["size"], upload["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert upload["thumbnail_url"] is None
    whole = on_a.get(f"/uploads/{upload['id']}")
    assert whole.status_code == 200, whole.text
    assert whole.content == data
    across = on_a.get(f"/uploads/{upload['id']}", headers={"Range": "bytes=262100-524300"})
    assert across.status_code == 206, across.text
    assert across.content == data[262100:524301]
    assert across.headers["content-range"] == f"bytes 262100-524300/{len(data)}"
    last = on_a.get(f"/uploads/{upload['id']}", headers={"Range": "bytes=-4"})
    assert (last.status_code, last.content) == (206, b"tail")
