"""Hostile traffic against a live chat-server: each attack gets its declared answer, and another user's ordinary
request still succeeds while it runs. Latencies are reported at the end, never asserted."""

import concurrent.futures
import contextlib
import http.client
import os
import signal
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_postgres, write_report
from tests.live_server import live_server

# Short enough to keep this module quick; the defaults (30 s and so on) are documented in docs/configuration.md.
REQUEST_TIMEOUT = 2
ORDINARY_TIMEOUT = 15
FORM = {"content-type": "application/x-www-form-urlencoded"}
FORM_HEADER = b"Content-Type: application/x-www-form-urlencoded\r\n"
ATTACK_SECONDS = 2
REPORT: list[tuple[str, str, str]] = []
# The attacks come from 127.0.0.1; the ordinary user is another client address (all of 127/8 is loopback on Linux).
BYSTANDER_ADDRESS = "127.0.0.2"


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    if not REPORT:
        return
    table = ["", "| attack | answer | ordinary user's requests during it (n, median, max) |", "|---|---|---|"]
    # Under xdist each worker runs some of the attacks and reports those; the controller writes them at the end.
    write_report(request.config, table + [f"| {attack} | {answer} | {latency} |" for attack, answer, latency in REPORT])
    REPORT.clear()  # xdist may set this module up again on the same worker, for the attacks it gets later


@pytest.fixture(scope="module")
def server():
    with live_server("--request-timeout", str(REQUEST_TIMEOUT)) as running:
        yield running


def register(server, name: str, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    client = httpx.Client(base_url=server.url, timeout=ORDINARY_TIMEOUT, transport=transport)
    response = client.post("/api/user/0", data={"name": name, "password": "long enough", "email": f"{name}@ex.com"})
    assert response.status_code == 201, response.text
    return client


@pytest.fixture(scope="module")
def bystander(server):
    """Another user, whose chat list is the ordinary request made during every attack."""
    client = register(server, "bystander", BYSTANDER_ADDRESS)
    chat_id = client.post("/api/chats", data={"title": "daily"}).json()["id"]
    client.post(f"/api/chats/{chat_id}", data={"content": "still here"})
    yield client
    client.close()


@contextlib.contextmanager
def ordinary_traffic(bystander: httpx.Client, attack: str, answer: str):
    """Keep making the bystander's ordinary request while the block runs; afterwards, all of them must have
    succeeded (within the client's timeout). Their latencies go into the report."""
    statuses, latencies, stop = [], [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = bystander.get("/api/chats")
                statuses.append(response.status_code if isinstance(response.json()["chats"], list) else "no list")
            except Exception as exc:
                statuses.append(repr(exc))
            latencies.append(time.perf_counter() - started)
            stop.wait(0.02)

    thread = threading.Thread(target=keep_asking)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    ordered = sorted(latencies)
    summary = (
        f"{len(ordered)}, {ordered[len(ordered) // 2] * 1000:.0f} ms, {ordered[-1] * 1000:.0f} ms" if ordered else "-"
    )
    REPORT.append((attack, answer, summary))
    assert statuses, "the ordinary request never completed during the attack"
    assert set(statuses) == {200}, statuses


def send_raw(server, data: bytes, read_timeout: float = 10) -> tuple[int, bytes, bytes]:
    """Send bytes on a fresh connection and return the status, headers and body of the one response it gets."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")),
            None,
        )
        while length is not None and len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return int(head.split(b" ", 2)[1]), head.lower(), body


def assert_json_error(headers: bytes, body: bytes) -> None:
    assert b"content-type: application/json" in headers
    assert body.startswith(b'{"error": ')


def rounds(seconds: float):
    """Repeat an attack for about this long (at least once), so that ordinary requests overlap it."""
    deadline = time.monotonic() + seconds
    yield 0
    count = 1
    while time.monotonic() < deadline:
        yield count
        count += 1


def parallel(count: int, work) -> list:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: work(), range(count)))


def test_query_parameter_flood_is_refused_before_parsing(server, bystander):
    flood = b"&".join(b"k%d=%d" % (n, n) for n in range(15_000))
    many = b"&".join(b"k%d=1" % n for n in range(100))
    with ordinary_traffic(bystander, "15,000 query keys (60 KB URL), 8 in parallel, for 2 s", "414"):
        for _ in rounds(ATTACK_SECONDS):
            answers = parallel(
                8, lambda: send_raw(server, b"POST /api/login?" + flood + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            )
            assert {status for status, _, _ in answers} == {414}
            assert_json_error(*answers[0][1:])
    status, _, body = send_raw(
        server, b"POST /api/login?" + many + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert status == 400
    assert b"too many query parameters" in body


def test_form_with_many_fields_is_bad_request(server, bystander):
    fields = "&".join(f"f{n}=1" for n in range(500))
    response = bystander.post("/api/chats", content=fields, headers=FORM)
    assert response.status_code == 400
    assert "too many form fields" in response.json()["error"]


def test_oversized_header_is_431_and_readable(server, bystander):
    huge = b"GET /api/chats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n"
    with ordinary_traffic(bystander, "4 MiB request header, 4 in parallel, for 2 s", "431"):
        for _ in rounds(ATTACK_SECONDS):
            answers = parallel(4, lambda: send_raw(server, huge))
            assert [status for status, _, _ in answers] == [431] * 4
    assert_json_error(*answers[0][1:])


def test_malformed_http_gets_a_json_400(server):
    status, headers, body = send_raw(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400
    assert_json_error(headers, body)


def test_half_sent_request_is_closed_with_408_within_the_timeout(server, bystander):
    host, port = server.url.removeprefix("http://").split(":")
    with ordinary_traffic(bystander, "slow headers, slow body and 300 idle sockets", "408, closed"):
        # From three addresses, each within its share of connections (a tenth of --max-connections).
        idle = [
            socket.create_connection((host, int(port)), source_address=(f"127.0.0.{3 + n % 3}", 0)) for n in range(300)
        ]
        try:
            status, headers, body = send_raw(server, b"GET /api/chats HTTP/1.1\r\nHost: x\r\n")
            assert status == 408
            assert_json_error(headers, body)
            status, _, _ = send_raw(
                server, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n" + FORM_HEADER + b"\r\nname="
            )
            assert status == 408
            for sock in idle:
                sock.settimeout(REQUEST_TIMEOUT * 5)
                assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/login"),
        ("POST", "/api/user/0"),
        ("PUT", "/api/user/1"),
        ("POST", "/api/chats"),
        ("POST", "/api/chats/1"),
        ("PUT", "/api/chats/1"),
        ("POST", "/api/chats/1/members"),
    ],
)
def test_form_without_content_type_is_415_on_every_form_operation(server, bystander, method, path):
    response = bystander.request(method, path, content=b"name=x&password=password123&title=t&content=c")
    assert response.status_code == 415
    assert set(response.json()) == {"error"}


def test_overlong_user_id_cookie_is_401(server):
    with httpx.Client(base_url=server.url) as client:
        client.cookies.update({"user_id": "9" * 5000, "token": "t" * 43})
        response = client.get("/api/chats")
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_two_megabyte_bodies_get_a_413_the_client_can_read(server, bystander):
    body = b"content=" + b"x" * 2_000_000

    def plain() -> int:
        request = urllib.request.Request(f"{server.api_url}/chats/1", data=body, headers=FORM, method="POST")
        try:
            urllib.request.urlopen(request, timeout=ORDINARY_TIMEOUT)
        except urllib.error.HTTPError as error:
            return error.code
        return 0

    def chunked() -> int:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=ORDINARY_TIMEOUT)
        try:
            pieces = (body[n : n + 65536] for n in range(0, len(body), 65536))
            connection.request("POST", "/api/chats/1", body=pieces, headers=FORM, encode_chunked=True)
            return connection.getresponse().status
        finally:
            connection.close()

    with ordinary_traffic(bystander, "2 MB bodies, 50 plain and 50 chunked", "413, all readable"):
        plain_statuses = [plain() for _ in range(50)]
        chunked_statuses = [chunked() for _ in range(50)]
    assert plain_statuses == [413] * 50
    assert chunked_statuses == [413] * 50


def test_eleventh_wrong_password_for_a_name_is_429(server, bystander):
    victim = register(server, "victim")
    victim.close()
    with httpx.Client(base_url=server.url) as attacker, ordinary_traffic(bystander, "password guessing", "429"):
        guesses = [
            attacker.post("/api/login", data={"name": "victim", "password": f"guess-{n:04d}"}) for n in range(11)
        ]
    assert [r.status_code for r in guesses] == [400] * 10 + [429]
    assert int(guesses[-1].headers["retry-after"]) >= 1
    assert set(guesses[-1].json()) == {"error"}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_deleting_a_chat_of_200k_messages_leaves_others_answering(workers):
    with live_server("--workers", workers) as running:
        owner, bystander = register(running, "owner"), register(running, "other")
        chat_id = owner.post("/api/chats", data={"title": "long history"}).json()["id"]
        own_chat = bystander.post("/api/chats", data={"title": "daily"}).json()["id"]
        bystander.post(f"/api/chats/{own_chat}", data={"content": "still here"})
        with contextlib.closing(sqlite3.connect(running.database_path, timeout=30)) as connection, connection:
            connection.executemany(
                "INSERT INTO message (chat_id, sender_id, content, time) VALUES (?, ?, ?, ?)",
                ((chat_id, 1, f"old message {n}", "2026-11-27T00:00:00.000000Z") for n in range(200_000)),
            )
        with ordinary_traffic(bystander, f"leaving a chat of 200,000 messages, {workers} worker(s)", "200"):
            left = owner.delete("/api/chats", params={"chat_id": chat_id})
        assert left.status_code == 200
        assert owner.get(f"/api/chats/{chat_id}").status_code == 404
        remaining = sqlite_count(running.database_path, "SELECT count(*) FROM message WHERE chat_id = ?", chat_id)
        assert remaining == 0
        owner.close()
        bystander.close()


def test_client_that_stops_reading_its_response_is_dropped(server, bystander):
    reader = register(server, "never-reads")
    chat_id = reader.post("/api/chats", data={"title": "long messages"}).json()["id"]
    with contextlib.closing(sqlite3.connect(server.database_path, timeout=30)) as connection, connection:
        connection.executemany(
            "INSERT INTO message (chat_id, sender_id, content, time) VALUES (?, ?, ?, ?)",
            ((chat_id, 1, "x" * 10_000, "2026-11-27T00:00:00.000000Z") for _ in range(1000)),
        )
    cookies = "; ".join(f"{name}={value}" for name, value in reader.cookies.items())
    reader.close()
    host, port = server.url.removeprefix("http://").split(":")
    with ordinary_traffic(bystander, "a 10 MB response the client never reads", "dropped after the timeout"):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        with sock:
            sock.sendall(
                b"GET /api/chats/%d?limit=1000 HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n" % (chat_id, cookies.encode())
            )
            time.sleep(REQUEST_TIMEOUT * 2)
            received = b""
            sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    assert len(received) < 10_000_000


def redis_answers() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=1):
        return True
    return False


@pytest.mark.skipif(not redis_answers() and not os.environ.get("CI"), reason="no Redis on 127.0.0.1:6379")
def test_login_limit_in_redis_holds_across_two_hosts():
    # Counts in Redis outlive this test; a fresh name, and the address and registration limits off, keep runs apart.
    shared = ("--rate-limit-storage", "redis://127.0.0.1:6379", "--login-address-rate", "off", "--register-rate", "off")
    name = f"victim-{time.time_ns()}"
    with live_server(*shared) as first, live_server(*shared) as second:
        register(first, name).close()
        with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as other:
            guesses = [one.post("/api/login", data={"name": name, "password": f"guess-{n:04}"}) for n in range(10)]
            refused = other.post("/api/login", data={"name": name, "password": "guess-0010"})
    assert [r.status_code for r in guesses] == [400] * 10
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


def test_concurrent_password_guesses_get_at_most_the_limit_plus_the_turns_in_flight():
    # The limit is checked before a guess and counted after it fails, so guesses already hashing when the
    # limit fills can still be answered: at most one per hashing turn.
    with live_server("--hash-concurrency", "2") as guarded:
        register(guarded, "target").close()
        with httpx.Client(base_url=guarded.url, timeout=60) as attacker:
            form = {"name": "target", "password": "not the password"}
            statuses = parallel(40, lambda: attacker.post("/api/login", data=form).status_code)
    assert set(statuses) <= {400, 429, 503}
    assert 10 <= statuses.count(400) <= 10 + 2


def test_over_the_connection_cap_gets_503_with_retry_after():
    # Each address may hold all the connections, so that one address can reach the cap.
    with live_server(
        "--max-connections", "20", "--max-connections-per-address", "30", "--request-timeout", "5"
    ) as capped:
        host, port = capped.url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(25)]
        try:
            status, headers, body = send_raw(capped, b"GET /api/chats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        finally:
            for sock in held:
                sock.close()
        assert status == 503
        assert b"retry-after: 1" in headers
        assert_json_error(headers, body)
        with httpx.Client(base_url=capped.url) as client:
            assert client.get("/api/chats").status_code == 401  # back under the cap: an ordinary answer


def sqlite_messages(database: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM message ORDER BY id")]


def sqlite_count(database: Path, query: str, *parameters) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return connection.execute(query, parameters).fetchone()[0]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_48_concurrent_logins_stay_under_a_gibibyte():
    with live_server("--password-profile", "secure") as secure:
        ordinary = register(secure, "ordinary")
        with httpx.Client(base_url=secure.url, timeout=60) as attacker:

            def wrong_login() -> int:
                form = {"name": f"nobody-{threading.get_ident()}", "password": "wrong password"}
                return attacker.post("/api/login", data=form).status_code

            with ordinary_traffic(ordinary, "48 concurrent wrong-password logins (secure argon2id)", "400/429/503"):
                statuses = parallel(48, wrong_login)
        ordinary.close()
        peak = peak_rss_mib(secure.process.pid)
    REPORT.append(("  peak RSS during those logins", f"{peak:.0f} MiB", ""))
    assert set(statuses) <= {400, 429, 503}, statuses
    assert peak < 1024


@pytest.mark.postgres
def test_login_flood_on_postgresql_leaves_other_requests_answering():
    """On PostgreSQL every request needs a pool thread; logins waiting for a hashing turn must not hold them all."""
    url = fresh_postgres()  # this xdist worker's database; skips (fails under CI) when PostgreSQL does not answer
    limits_off = ("--login-rate", "off", "--login-address-rate", "off", "--register-rate", "off")
    with live_server("--database", url, "--password-profile", "secure", *limits_off) as pg:
        ordinary = register(pg, f"ordinary-{time.time_ns()}")
        with httpx.Client(base_url=pg.url, timeout=60) as attacker:

            def wrong_login() -> int:
                return attacker.post("/api/login", data={"name": "nobody", "password": "wrong password"}).status_code

            with ordinary_traffic(ordinary, "60 concurrent wrong logins on PostgreSQL", "400/503"):
                statuses = parallel(60, wrong_login)
        ordinary.close()
    assert set(statuses) <= {400, 503}, statuses


def test_sigterm_lets_the_request_in_flight_finish_and_exits():
    with live_server() as running, contextlib.closing(register(running, "owner")) as owner:
        chat_id = owner.post("/api/chats", data={"title": "last words"}).json()["id"]
        cookies = "; ".join(f"{name}={value}" for name, value in owner.cookies.items())
        host, port = running.url.removeprefix("http://").split(":")
        body = b"content=sent+while+stopping"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /api/chats/%d HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n%sContent-Length: %d\r\n\r\n%s"
                % (chat_id, cookies.encode(), FORM_HEADER, len(body), body[:8])
            )
            time.sleep(0.3)
            os.kill(running.process.pid, signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(body[8:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201 ")
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
        assert running.process.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(running.api_url + "/openapi.json", timeout=2)
        assert [m["content"] for m in sqlite_messages(running.database_path)] == ["sent while stopping"]
