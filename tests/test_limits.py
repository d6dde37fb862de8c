"""Defences: rate limits on logins and registrations, the password-hashing budget, and bounded request bodies."""

import threading
import time

import anyio
import pytest

from chat_server.accounts.passwords import Passwords
from chat_server.accounts.ratelimit import RateLimits, parse_rate
from chat_server.core.errors import TooManyRequests, Unavailable
from tests.conftest import new_client

WRONG = {"name": "alice", "password": "not the password"}


def test_login_eleventh_wrong_password_for_a_name_is_too_many_requests(app, alice):
    for _ in range(10):
        assert alice.client.post("/api/login", data=WRONG).status_code == 400
    response = alice.client.post("/api/login", data=WRONG)
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 300
    assert "failed logins for this name" in response.json()["error"]


def test_login_limit_refuses_even_the_right_password_until_the_window_passes(app, alice):
    for _ in range(10):
        alice.client.post("/api/login", data=WRONG)
    response = alice.client.post("/api/login", data={"name": "alice", "password": alice.password})
    assert response.status_code == 429


@pytest.mark.parametrize("spelling", ["Alice", "ALICE", " alice", "\u0430lice"])
def test_login_limit_counts_every_spelling_that_logs_in_as_the_user(app, alice, spelling):
    """The count is kept under the look-alike key: another spelling of the name gets no fresh guesses."""
    assert alice.client.post("/api/login", data={"name": spelling, "password": alice.password}).status_code == 200
    for _ in range(10):
        assert alice.client.post("/api/login", data={**WRONG, "name": spelling}).status_code == 400
    for name in ("alice", "Alice", "ALICE"):
        assert alice.client.post("/api/login", data={**WRONG, "name": name}).status_code == 429


def test_change_password_shares_the_login_limit_of_every_spelling(app, alice):
    for _ in range(10):
        assert alice.client.post("/api/login", data={**WRONG, "name": "ALICE"}).status_code == 400
    form = {"current_password": alice.password, "new_password": "another good horse"}
    response = alice.client.put(f"/api/user/{alice.id}/password", data=form)
    assert response.status_code == 429


def test_login_successes_do_not_count(app, alice):
    for _ in range(12):
        assert alice.client.post("/api/login", data={"name": "alice", "password": alice.password}).status_code == 200


def test_login_per_address_limit_covers_many_names(app):
    client = new_client(app)
    for n in range(30):
        assert client.post("/api/login", data={"name": f"nobody-{n}", "password": "long enough"}).status_code == 400
    response = client.post("/api/login", data={"name": "someone-else", "password": "long enough"})
    assert response.status_code == 429
    assert "from your address" in response.json()["error"]


def test_register_user_eleventh_from_one_address_is_too_many_requests(app):
    client = new_client(app)
    for n in range(10):
        form = {"name": f"user-{n}", "password": "long enough", "email": f"u{n}@example.com"}
        assert client.post("/api/user/0", data=form).status_code == 201
    response = client.post("/api/user/0", data={"name": "one-more", "password": "long enough", "email": "x@ex.com"})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


def test_rate_off_turns_a_limit_off(database_url, monkeypatch):
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")
    from chat_server.app import create_app

    client = new_client(create_app(database_url, validate_responses=True, password_profile="cheapest"))
    for n in range(12):
        form = {"name": f"user-{n}", "password": "long enough", "email": f"u{n}@example.com"}
        assert client.post("/api/user/0", data=form).status_code == 201


@pytest.mark.parametrize("text", ["10", "0/60", "10/0", "ten/60", "10/60s", ""])
def test_parse_rate_refuses_malformed_rates(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_parse_rate_reads_n_per_seconds():
    rate = parse_rate("10/300")
    assert (rate.amount, rate.get_expiry()) == (10, 300)
    assert parse_rate("off") is None


def test_memory_limits_refuse_the_hit_over_the_rate_until_the_window_moves():
    limits = RateLimits("3/1", "off", "off", "memory://")
    for _ in range(3):
        limits.hit(limits.login_name, "alice")
    with pytest.raises(TooManyRequests) as refused:
        limits.hit(limits.login_name, "alice")
    assert refused.value.headers == {"Retry-After": "1"}
    limits.hit(limits.login_name, "bob")  # another key has its own window
    time.sleep(1.05)
    limits.hit(limits.login_name, "alice")


def test_memory_limits_forget_a_key_once_its_hits_leave_the_window():
    """limits' own MemoryStorage kept every key it had seen (200,000 expired keys held 106 MB)."""
    limits = RateLimits("5/1", "off", "off", "memory://")
    for n in range(2_000):
        limits.count(limits.login_name, f"name-{n}")
    store = limits.storage
    assert store.keys == 2_000
    time.sleep(1.05)
    limits.count(limits.login_name, "one more")
    assert store.keys == 1


def test_redis_storage_shares_counts_between_two_processes_worth_of_limits():
    """Two RateLimits over one Redis stand in for two workers (or hosts): a count made by one holds in the other."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    key = f"name-{time.time_ns()}"
    first, second = (RateLimits("2/60", "off", "off", "redis://127.0.0.1:6379") for _ in range(2))
    first.count(first.login_name, key)
    second.count(second.login_name, key)
    with pytest.raises(TooManyRequests):
        first.check(first.login_name, key)


def test_password_verify_accepts_only_the_right_password():
    passwords = Passwords("cheapest")
    stored = passwords.hash("correct horse")
    assert passwords.verify(stored, "correct horse")
    assert not passwords.verify(stored, "wrong horse")
    assert not passwords.verify(None, "correct horse")  # an unknown user still costs a hash, and fails


def test_hashing_turns_never_let_more_hashes_run_at_once():
    passwords = Passwords("cheapest", concurrency=2, wait_seconds=10)
    running, peak, lock = 0, 0, threading.Lock()

    def counting_hash():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return passwords.hash("pw")

    async def one_request():
        async with passwords.turn():
            await anyio.to_thread.run_sync(counting_hash)

    async def twelve_requests():
        async with anyio.create_task_group() as requests:
            for _ in range(12):
                requests.start_soon(one_request)

    anyio.run(twelve_requests)
    assert peak == 2


def test_hashing_turn_waits_on_the_event_loop_then_refuses_with_503():
    passwords = Passwords("cheapest", concurrency=1, wait_seconds=0.05)

    async def scenario():
        async with passwords.turn():
            with pytest.raises(Unavailable) as refused:
                async with passwords.turn():
                    pass
            assert refused.value.headers == {"Retry-After": "1"}
        async with passwords.turn():
            return "free again"

    assert anyio.run(scenario) == "free again"
