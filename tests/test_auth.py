"""Login, logout, and the cookie-token authentication every other operation relies on."""

import pytest

from tests.conftest import new_client


def test_register_sets_session_cookies_and_location(client):
    response = client.post("/api/user/0", data={"name": "carol", "password": "carol secret", "email": "c@example.com"})
    assert response.status_code == 201
    assert response.headers["location"] == "/api/chats"
    assert response.json() == {"status": "ok", "id": response.json()["id"]}
    cookies = response.headers.get_list("set-cookie")
    assert {c.split("=", 1)[0] for c in cookies} == {"user_id", "token"}
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie


def test_login_returns_200_with_cookies(app, alice):
    fresh = new_client(app)
    response = fresh.post("/api/login", data={"name": "alice", "password": alice.password})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "id": alice.id}
    assert response.headers["location"] == "/api/chats"
    assert fresh.cookies["user_id"] == str(alice.id)
    assert fresh.get("/api/chats").status_code == 200


def test_login_over_https_sets_secure_cookies(app, alice):
    secure = new_client(app, base_url="https://testserver")
    response = secure.post("/api/login", data={"name": "alice", "password": alice.password})
    assert response.status_code == 200
    assert all("Secure" in cookie for cookie in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize("name, password", [("alice", "wrong password"), ("nobody", "correct horse")])
def test_login_bad_credentials_do_not_say_which(client, alice, name, password):
    response = client.post("/api/login", data={"name": name, "password": password})
    assert response.status_code == 400
    assert response.json() == {"error": "wrong name or password"}
    assert "set-cookie" not in response.headers


def test_login_each_time_creates_a_new_session(app, alice):
    first, second = new_client(app), new_client(app)
    for c in (first, second):
        assert c.post("/api/login", data={"name": "alice", "password": alice.password}).status_code == 200
    assert first.cookies["token"] != second.cookies["token"]
    assert first.get("/api/logout").status_code == 200
    assert second.get("/api/chats").status_code == 200
    assert alice.client.get("/api/chats").status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST"])  # the seed's GET, and POST /api/logout (end_session)
def test_logout_revokes_token_and_clears_cookies(app, alice, method):
    token = alice.client.cookies["token"]
    response = alice.client.request(method, "/api/logout")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["location"] == "/api/login"
    cleared = {c.split("=", 1)[0] for c in response.headers.get_list("set-cookie") if "Max-Age=0" in c}
    assert cleared == {"user_id", "token"}
    replay = new_client(app, cookies={"user_id": str(alice.id), "token": token})
    assert replay.get("/api/chats").status_code == 401


def test_session_says_who_the_cookies_belong_to(app, alice, bob):
    response = alice.client.get("/api/session")
    assert response.status_code == 200
    assert response.json() == {
        "user": {"id": alice.id, "name": "alice", "email": "alice@example.com", "avatar_url": None}
    }
    assert bob.client.get("/api/session").json()["user"]["id"] == bob.id
    # A tab whose cookies another login replaced learns it from here.
    tab = new_client(app)
    tab.post("/api/login", data={"name": "alice", "password": alice.password})
    assert tab.get("/api/session").json()["user"]["name"] == "alice"
    tab.post("/api/login", data={"name": "bob", "password": bob.password})
    assert tab.get("/api/session").json()["user"]["name"] == "bob"


def test_session_after_logout_or_without_cookies_is_unauthorized(app, alice, client):
    assert client.get("/api/session").status_code == 401
    cookies = dict(alice.client.cookies)
    assert alice.client.get("/api/logout").status_code == 200
    response = new_client(app, cookies=cookies).get("/api/session")
    assert response.status_code == 401
    assert response.json() == {"error": "the session cookies are not valid, or the session has ended"}


def test_logout_without_cookies_is_unauthorized(client):
    response = client.get("/api/logout")
    assert response.status_code == 401
    assert "error" in response.json()


@pytest.mark.parametrize(
    "cookies",
    [
        {},
        {"user_id": "1"},
        {"token": "A" * 43},
        {"user_id": "abc", "token": "A" * 43},
        {"user_id": "1", "token": "short"},
        {"user_id": "99999999999999999999999", "token": "A" * 43},
    ],
)
def test_list_chats_with_missing_or_malformed_cookies_is_unauthorized(app, alice, cookies):
    response = new_client(app, cookies=cookies).get("/api/chats")
    assert response.status_code == 401
    assert "error" in response.json()


def test_forged_token_is_unauthorized(app, alice):
    forged = new_client(app, cookies={"user_id": str(alice.id), "token": "A" * 43})
    assert forged.get("/api/chats").status_code == 401


def test_another_users_token_with_your_user_id_is_unauthorized(app, alice, bob):
    mixed = new_client(app, cookies={"user_id": str(alice.id), "token": bob.client.cookies["token"]})
    response = mixed.get("/api/chats")
    assert response.status_code == 401


def test_access_token_cookie_is_accepted_as_alias(app, alice):
    aliased = new_client(app, cookies={"user_id": str(alice.id), "access_token": alice.client.cookies["token"]})
    assert aliased.get("/api/chats").status_code == 200


def test_a_live_access_token_beside_a_forged_token_is_accepted(app, alice):
    both = new_client(app, cookies={"user_id": str(alice.id), "token": "A" * 43})
    both.cookies.set("access_token", alice.client.cookies["token"])
    assert both.get("/api/chats").status_code == 200
    # Logging out through it ends the live session, the one it was let in with.
    assert both.post("/api/logout").status_code == 200
    assert alice.client.get("/api/chats").status_code == 401


def test_malformed_unrelated_cookie_does_not_break_auth(app, alice):
    cookie_header = f"ga=a b; user_id={alice.id}; token={alice.client.cookies['token']}"
    response = new_client(app).get("/api/chats", headers={"Cookie": cookie_header})
    assert response.status_code == 200


def test_stored_token_is_hashed(alice):
    from chat_server import models

    stored = [s.token_hash for s in models.Session.select()]
    assert alice.client.cookies["token"] not in stored
    assert models.Session.hash_token(alice.client.cookies["token"]) in stored


def test_password_is_hashed_with_argon2id(alice):
    from chat_server import models

    assert models.User.get_by_id(alice.id).password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("POST", "/api/chats", {"data": {"title": ""}}),
        ("GET", "/api/chats/1", {"params": {"limit": 0}}),
        ("POST", "/api/chats", {"json": {"title": "json"}}),
    ],
)
def test_revoked_session_is_unauthorized_before_validation(app, alice, method, path, kwargs):
    cookies = {"user_id": str(alice.id), "token": alice.client.cookies["token"]}
    assert alice.client.get("/api/logout").status_code == 200
    response = new_client(app, cookies=cookies).request(method, path, **kwargs)
    assert response.status_code == 401
    assert response.json() == {"error": "the session cookies are not valid, or the session has ended"}
