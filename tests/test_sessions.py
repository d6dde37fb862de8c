"""The credential lifecycle: changing a password, the new-password rules, logging out everywhere, session expiry."""

import datetime

import pytest

from chat_server import models
from chat_server.accounts import credentials, passwords
from chat_server.app import create_app
from tests.conftest import Person, new_client, write_lock_held_by_another_thread

NINETY_DAYS = 90 * 86_400


def change(person, new_password: str, current_password: str | None = None, user_id: int | None = None):
    form = {"current_password": current_password or person.password, "new_password": new_password}
    return person.client.put(f"/api/user/{user_id or person.id}/password", data=form)


def login(app, name: str, password: str):
    fresh = new_client(app)
    return fresh, fresh.post("/api/login", data={"name": name, "password": password})


def session_of(client) -> models.Session:
    with models.db.connection_context():
        return models.Session.get(models.Session.token_hash == models.Session.hash_token(client.cookies["token"]))


def set_session_times(person, **times: datetime.timedelta) -> None:
    """Move the person's session's created_at or last_seen_at this far into the past (None: clear it)."""
    now = models.utcnow()
    values = {field: None if ago is None else now - ago for field, ago in times.items()}
    with models.db.connection_context(), models.db.atomic():
        models.Session.update(values).where(models.Session.id == session_of(person.client).id).execute()


def ended_sessions(user_id: int) -> list[int | None]:
    """The session ids of the session.ended events recorded for the user (None: all of them)."""
    with models.db.connection_context():
        events = models.Event.select(models.Event.session_id).where(
            models.Event.user_id == user_id, models.Event.kind == models.SESSION_ENDED
        )
        return [event.session_id for event in events.order_by(models.Event.id)]


def test_change_password_new_one_logs_in_and_old_one_does_not(app, alice):
    response = change(alice, "a new horse battery")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert login(app, "alice", "a new horse battery")[1].status_code == 200
    assert login(app, "alice", alice.password)[1].status_code == 400


def test_change_password_wrong_current_password_is_bad_request(app, alice):
    response = change(alice, "a new horse battery", current_password="not my password")
    assert response.status_code == 400
    assert response.json() == {"error": "wrong password"}
    assert login(app, "alice", alice.password)[1].status_code == 200


def test_change_password_wrong_current_passwords_count_as_failed_logins(app, alice):
    for _ in range(10):
        assert change(alice, "a new horse battery", current_password="not my password").status_code == 400
    refused = change(alice, "a new horse battery")
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert login(app, "alice", alice.password)[1].status_code == 429


def test_change_password_ends_the_other_sessions_and_keeps_this_one(app, alice):
    phone, _ = login(app, "alice", alice.password)
    assert change(alice, "a new horse battery").status_code == 200
    assert phone.get("/api/chats").status_code == 401
    assert alice.client.get("/api/chats").status_code == 200


def test_change_password_ends_the_other_sessions_event_streams_only(app, alice):
    phone, _ = login(app, "alice", alice.password)
    laptop, _ = login(app, "alice", alice.password)
    others = {session_of(device).id for device in (phone, laptop)}
    assert change(alice, "a new horse battery").status_code == 200
    assert set(ended_sessions(alice.id)) == others


def test_change_password_of_another_user_is_forbidden(alice, bob):
    response = change(alice, "a new horse battery", user_id=bob.id)
    assert response.status_code == 403
    assert "error" in response.json()


def test_change_password_of_an_unknown_user_is_not_found(alice):
    assert change(alice, "a new horse battery", user_id=alice.id + 1000).status_code == 404


def test_change_password_without_cookies_is_unauthorized(client, alice):
    form = {"current_password": alice.password, "new_password": "a new horse battery"}
    assert client.put(f"/api/user/{alice.id}/password", data=form).status_code == 401


@pytest.mark.parametrize(
    "weak, error",
    [
        ("password", "most common"),
        ("12345678", "most common"),
        ("PassWord1", "most common"),
        (" iloveyou ", "most common"),
        ("alice smith", "your name"),
        ("ALICE SMITH", "your name"),
        ("AliceSmith", "your name"),
    ],
)
def test_change_password_to_a_weak_one_is_bad_request(app, client, weak, error):
    form = {"name": "alice smith", "password": "correct horse", "email": "alice@example.com"}
    alice = Person(client.post("/api/user/0", data=form).json()["id"], form["name"], form["password"], client)
    response = change(alice, weak)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert login(app, "alice smith", alice.password)[1].status_code == 200


@pytest.mark.parametrize(
    "name, password, error",
    [
        ("carol", "password", "most common"),
        ("carol", "12345678", "most common"),
        ("carol", "Qwertyuiop", "most common"),
        ("carol-smith", "Carol-Smith", "your name"),
        ("carol smith", "carolsmith", "your name"),
    ],
)
def test_register_user_with_a_weak_password_is_bad_request(client, name, password, error):
    response = client.post("/api/user/0", data={"name": name, "password": password, "email": "c@example.com"})
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert "set-cookie" not in response.headers


def test_login_with_a_password_the_rules_now_refuse_still_works(app):
    with models.db.connection_context():
        passwords.register("old-timer", "password", "old@example.com")
    assert login(app, "old-timer", "password")[1].status_code == 200


def test_end_session_keeps_the_other_sessions(app, alice):
    phone, _ = login(app, "alice", alice.password)
    assert alice.client.post("/api/logout", params={"all": "false"}).status_code == 200
    assert phone.get("/api/chats").status_code == 200


def test_end_session_all_ends_every_session_and_their_streams(app, alice, bob):
    phone, _ = login(app, "alice", alice.password)
    response = alice.client.post("/api/logout", params={"all": "true"})
    assert response.status_code == 200
    assert phone.get("/api/chats").status_code == 401
    assert alice.client.get("/api/chats").status_code == 401
    assert ended_sessions(alice.id) == [None]  # one event ends every stream of the user's
    assert bob.client.get("/api/chats").status_code == 200


def test_end_session_without_cookies_is_unauthorized(client):
    assert client.post("/api/logout").status_code == 401


def test_head_logout_does_not_log_out(alice):
    assert alice.client.head("/api/logout").status_code == 405
    assert alice.client.get("/api/chats").status_code == 200


def test_session_cookies_last_the_session_lifetime(app, client, alice):
    registered = client.post("/api/user/0", data={"name": "carol", "password": "correct horse", "email": "c@ex.com"})
    logged_in = login(app, "alice", alice.password)[1]
    for response in (registered, logged_in):
        cookies = response.headers.get_list("set-cookie")
        assert len(cookies) == 2
        assert all(f"Max-Age={NINETY_DAYS}" in cookie for cookie in cookies), cookies


def test_session_settings_come_from_the_environment(database_url, monkeypatch):
    monkeypatch.setenv("CHAT_SESSION_LIFETIME", "12h")
    monkeypatch.setenv("CHAT_SESSION_IDLE", "30m")
    client = new_client(create_app(database_url, validate_responses=True, password_profile="cheapest"))
    try:
        response = client.post("/api/user/0", data={"name": "dora", "password": "correct horse", "email": "d@ex.com"})
        assert all("Max-Age=43200" in cookie for cookie in response.headers.get_list("set-cookie"))
        assert credentials.sessions.idle == 1_800
    finally:
        models.db.close_all()


@pytest.mark.parametrize("value", ["2w", "0d", "-1h", "soon", "59s", "30"])
def test_bad_session_setting_is_refused(value):
    with pytest.raises(ValueError, match="CHAT_SESSION_IDLE"):
        credentials.SessionSettings.from_environment({"CHAT_SESSION_IDLE": value})


def test_short_idle_timeout_never_ends_an_active_session(database_url, monkeypatch):
    """At the least idle timeout the clock still moves well inside it: a request every 25 s keeps a 70 s session
    live (the clock used to move once a minute, so the second request found it 75 s old)."""
    monkeypatch.setenv("CHAT_SESSION_IDLE", "70s")
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    try:
        client = new_client(app)
        form = {"name": "erin", "password": "correct horse", "email": "e@ex.com"}
        assert client.post("/api/user/0", data=form).status_code == 201
        erin = Person(id=0, name="erin", password="correct horse", client=client)
        set_session_times(erin, last_seen_at=datetime.timedelta(seconds=50))
        assert client.get("/api/chats").status_code == 200
        moved = models.utcnow() - session_of(client).last_seen_at
        set_session_times(erin, last_seen_at=moved + datetime.timedelta(seconds=25))  # 25 s pass
        assert client.get("/api/chats").status_code == 200
    finally:
        models.db.close_all()


def test_idle_session_is_unauthorized(alice):
    set_session_times(alice, last_seen_at=datetime.timedelta(days=14, minutes=1))
    response = alice.client.get("/api/chats")
    assert response.status_code == 401
    assert "error" in response.json()


def test_session_past_its_lifetime_is_unauthorized_however_recently_used(alice):
    set_session_times(alice, created_at=datetime.timedelta(days=90, minutes=1), last_seen_at=datetime.timedelta(0))
    assert alice.client.get("/api/chats").status_code == 401


def test_session_used_within_the_idle_timeout_stays_live(alice):
    set_session_times(alice, created_at=datetime.timedelta(days=60), last_seen_at=datetime.timedelta(days=13))
    assert alice.client.get("/api/chats").status_code == 200


def test_session_from_before_the_idle_clock_counts_from_login(alice):
    set_session_times(alice, created_at=datetime.timedelta(days=15), last_seen_at=None)
    assert alice.client.get("/api/chats").status_code == 401


def test_request_moves_a_stale_idle_clock_forward(alice):
    set_session_times(alice, last_seen_at=datetime.timedelta(minutes=2))
    before = session_of(alice.client).last_seen_at
    assert alice.client.get("/api/chats").status_code == 200
    assert session_of(alice.client).last_seen_at > before + datetime.timedelta(minutes=1)


def test_request_within_a_minute_leaves_the_idle_clock_alone(alice):
    before = session_of(alice.client).last_seen_at
    assert alice.client.get("/api/chats").status_code == 200
    assert session_of(alice.client).last_seen_at == before


def test_request_sets_an_unset_idle_clock(alice):
    set_session_times(alice, created_at=datetime.timedelta(minutes=2), last_seen_at=None)
    assert alice.client.get("/api/chats").status_code == 200
    assert session_of(alice.client).last_seen_at is not None


def test_idle_clock_is_not_waited_for_while_another_thread_writes(alice):
    if not models.queries_are_local():
        pytest.skip("only SQLite checks sessions on the event loop, where a write must never wait")
    set_session_times(alice, last_seen_at=datetime.timedelta(minutes=2))
    before = session_of(alice.client).last_seen_at
    with write_lock_held_by_another_thread():
        assert alice.client.get("/api/chats").status_code == 200
    assert session_of(alice.client).last_seen_at == before  # skipped, and the next request after a minute tries again
