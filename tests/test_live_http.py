"""Black-box: the seed's operations over real HTTP against `chat-server` under uvicorn, as a new client would.

With CHAT_TEST_SERVER_URL set, they run against that server instead of starting one: `tox -e cluster` points it at
HAProxy in front of two chat-server processes (tests/test_cluster.py)."""

import asyncio
import shutil
import subprocess

import httpx
import pytest

from tests.live_server import live_or_remote_server, live_server, remote_server_url


@pytest.fixture(scope="module")
def server():
    # Every test here registers from 127.0.0.1; the registration limit is tested in tests/test_limits.py. Consent to
    # be added is tested in-process (tests/test_members.py): here everyone may add everyone.
    with live_or_remote_server("--register-rate", "off", "--default-who-can-add-me", "anyone") as running:
        yield running


_open_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def close_clients():
    yield
    while _open_clients:
        _open_clients.pop().close()


def http_client(server, **kwargs) -> httpx.Client:
    client = httpx.Client(base_url=server.url, **kwargs)
    _open_clients.append(client)
    return client


def register(server, name: str) -> httpx.Client:
    client = http_client(server)
    response = client.post("/api/user/0", data={"name": name, "password": "long enough", "email": f"{name}@ex.com"})
    assert response.status_code == 201, response.text
    return client


def test_seed_session_over_http(server):
    alice = http_client(server)
    registered = alice.post("/api/user/0", data={"name": "http-alice", "password": "long enough", "email": "a@ex.com"})
    assert registered.status_code == 201
    assert registered.headers["location"] == "/api/chats"
    assert {c.split("=")[0] for c in registered.headers.get_list("set-cookie")} == {"user_id", "token"}
    alice_id = registered.json()["id"]

    created = alice.post("/api/chats", data={"title": "over http"})
    assert created.status_code == 201
    chat_id = created.json()["id"]
    assert created.headers["location"] == f"/api/chats/{chat_id}"
    assert alice.post(f"/api/chats/{chat_id}", data={"content": "hello over http"}).status_code == 201

    messages = alice.get(f"/api/chats/{chat_id}").json()["messages"]
    assert [(m["content"], m["sender_id"]) for m in messages] == [("hello over http", alice_id)]
    chats = alice.get("/api/chats").json()["chats"]
    assert chats[0]["last_message"] == "hello over http"

    bob = register(server, "http-bob")
    assert bob.get(f"/api/chats/{chat_id}").status_code == 403
    assert alice.post(f"/api/chats/{chat_id}/members", data={"name": "http-bob"}).status_code == 201
    assert bob.get(f"/api/chats/{chat_id}").json()["messages"][0]["content"] == "hello over http"

    old_cookies = dict(alice.cookies)
    logged_out = alice.get("/api/logout")
    assert logged_out.status_code == 200
    assert logged_out.headers["location"] == "/api/login"
    replay = http_client(server, cookies=old_cookies)
    denied = replay.get("/api/chats")
    assert denied.status_code == 401
    assert denied.headers["content-type"] == "application/json"

    again = alice.post("/api/login", data={"name": "http-alice", "password": "long enough"})
    assert again.status_code == 200
    assert alice.get("/api/chats").status_code == 200


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("GET", "/api/nowhere", {}),
        ("PATCH", "/api/chats", {}),
        ("POST", "/api/chats", {"content": b"title=" + b"x" * 2_000_000}),
        ("POST", "/api/chats", {"json": {"title": "json is not accepted"}}),
        ("POST", "/api/login", {"data": {"name": "x"}}),
        ("GET", "/api/chats/99999999999999999999999", {}),
        ("GET", "/api/chats/1", {"params": {"limit": "lots"}}),
        (
            "POST",
            "/api/chats",
            {"content": b"title=%FF%FE%00", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        ),
    ],
)
def test_bad_input_gets_a_json_4xx(server, method, path, kwargs):
    client = register(server, f"bad-{method}-{abs(hash((path, str(kwargs)))) % 10**8}")
    if "content" in kwargs and "headers" not in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/x-www-form-urlencoded"}}
    response = client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}


def test_64_concurrent_sends_are_all_stored(server):
    owner = register(server, "http-crowd")
    chat_id = owner.post("/api/chats", data={"title": "crowd"}).json()["id"]
    cookies = dict(owner.cookies)

    async def send_all():
        async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=30) as client:
            sends = [client.post(f"/api/chats/{chat_id}", data={"content": f"burst {n}"}) for n in range(64)]
            return await asyncio.gather(*sends)

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [201] * 64
    stored = owner.get(f"/api/chats/{chat_id}", params={"limit": 1000}).json()["messages"]
    assert sorted(m["content"] for m in stored) == sorted(f"burst {n}" for n in range(64))
    if server.started_here:  # a server at CHAT_TEST_SERVER_URL keeps its log elsewhere
        assert "database is locked" not in server.log()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
@pytest.mark.skipif(
    remote_server_url() is not None, reason="starts its own HTTPS server; the one at CHAT_TEST_SERVER_URL is not it"
)
def test_https_server_sets_secure_cookies(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run([*openssl, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with (
        live_server("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)) as running,
        httpx.Client(base_url=running.url, verify=False) as client,
    ):
        response = client.post("/api/user/0", data={"name": "tls-user", "password": "long enough", "email": "t@ex.com"})
    assert response.status_code == 201
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert all("Secure" in cookie and "HttpOnly" in cookie for cookie in cookies)
