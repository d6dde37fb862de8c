"""Cross-site requests and the headers every response carries."""

import subprocess

import pytest

from chat_server import models
from chat_server.app import create_app

from .conftest import new_client
from .live_server import chat_server_command

EVIL = "https://evil.example"


def test_cross_origin_post_with_valid_cookies_is_forbidden_and_changes_nothing(alice):
    response = alice.client.post("/api/chats", data={"title": "pwned"}, headers={"Origin": EVIL})
    assert response.status_code == 403
    assert "cross-site" in response.json()["error"]
    assert alice.client.get("/api/chats").json()["chats"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Referer": f"{EVIL}/page"},
        {"Referer": "not a url"},
    ],
)
def test_cross_site_login_is_forbidden(client, alice, headers):
    response = client.post("/api/login", data={"name": "alice", "password": alice.password}, headers=headers)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl and generated clients send neither header
        {"Origin": "http://testserver"},
        {"Origin": "HTTP://TESTSERVER:80"},
        {"Referer": "http://testserver/api/ui/"},
    ],
)
def test_same_origin_or_headerless_login_is_allowed(client, alice, headers):
    response = client.post("/api/login", data={"name": "alice", "password": alice.password}, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("PUT", "/api/user/{me}", {"data": {"email": "evil@example.com"}}),
        ("DELETE", "/api/user/{me}", {}),
        ("GET", "/api/chats", {}),
        ("GET", "/api/user/{me}", {}),
    ],
)
def test_unsafe_methods_are_checked_and_safe_ones_are_not(alice, method, path, kwargs):
    response = alice.client.request(method, path.format(me=alice.id), headers={"Origin": EVIL}, **kwargs)
    assert response.status_code == (200 if method == "GET" else 403)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},  # a link or a redirect on another site: no Origin, often no Referer
        {"Referer": f"{EVIL}/page"},
        {"Origin": EVIL},
        {"Sec-Fetch-Site": "cross-site", "Referer": f"{EVIL}/"},
    ],
)
def test_get_logout_from_another_site_is_forbidden_and_the_session_lives(alice, headers):
    response = alice.client.get("/api/logout", headers=headers)
    assert response.status_code == 403
    assert "cross-site" in response.json()["error"]
    assert "set-cookie" not in response.headers
    assert alice.client.get("/api/session").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the seed's clients
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Referer": "http://testserver/"},
    ],
)
def test_get_logout_from_this_site_or_no_page_logs_out(alice, headers):
    assert alice.client.get("/api/logout", headers=headers).status_code == 200
    assert alice.client.get("/api/session").status_code == 401


def test_a_cross_site_post_without_origin_or_referer_is_forbidden(alice):
    response = alice.client.post("/api/chats", data={"title": "pwned"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


def test_an_allowed_origin_passes(database_url, monkeypatch):
    monkeypatch.setenv("CHAT_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:5173")
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    try:
        client = new_client(app)
        form = {"name": "alice", "password": "correct horse", "email": "alice@example.com"}
        assert client.post("/api/user/0", data=form, headers={"Origin": "https://app.example.com"}).status_code == 201
        response = client.post("/api/chats", data={"title": "t"}, headers={"Origin": "http://localhost:5173"})
        assert response.status_code == 201
        assert client.post("/api/chats", data={"title": "t"}, headers={"Origin": EVIL}).status_code == 403
    finally:
        models.db.close_all()


def test_a_malformed_allowed_origin_is_refused_at_start():
    started = subprocess.run(
        [*chat_server_command(), "--allowed-origins", "https://app.example.com/path"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "allowed origin" in started.stderr


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/chats"),  # the handler's answer
        ("GET", "/api/chats/424242"),  # a handler's error
        ("GET", "/api/nowhere"),  # the router's 404
        ("POST", "/api/login"),  # a validation error
        ("GET", "/api/user/1"),  # an authenticated profile, email and all
    ],
)
def test_every_api_response_says_no_store_and_nosniff(alice, method, path):
    response = alice.client.request(method, path)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_may_not_be_framed(app):
    response = app.test_client().get("/api/ui/")  # HTML, so not through the spec-checking client
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
