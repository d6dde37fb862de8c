"""Fixtures: a fresh database per test (SQLite file, or the real PostgreSQL), the real app, and clients whose every
response is checked against openapi/chat.yaml."""

import contextlib
import itertools
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import peewee
import psycopg2
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from psycopg2 import sql
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from chat_server import models
from chat_server.app import SPEC, create_app

# The configured PostgreSQL database. Under pytest-xdist (`pytest -n 2`), where PYTEST_XDIST_WORKER names each worker
# process (gw0, gw1, ...; unset without xdist), each worker has a database of its own instead, named after it
# (test_gw0): tests reach theirs through fresh_postgres() or the database_url fixture, never through this URL.
POSTGRES_URL = os.environ.get("CHAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
# pg_try_advisory_lock(classid, objid) that a worker holds in its database while it runs: another pytest run on this
# machine (its workers are named gw0, gw1 too) then takes test_gw0_2 and so on rather than empty the schema under it.
# The two-key form (objsubid 2) and these keys keep it apart from the app's own advisory locks.
WORKER_DATABASE_LOCK = (0x63686174, 0x78646973)
WORKER_DATABASE_CHOICES = 20


def worker_postgres_url(url: str, worker: str, choice: int = 1) -> str:
    """`url` with the worker's database name: `.../test` becomes `.../test_gw0` (choice 1), `.../test_gw0_2`..."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or parts.username or "postgres"  # libpq's default: the user's name
    suffix = f"_{worker}" if choice == 1 else f"_{worker}_{choice}"
    return urlunsplit(parts._replace(path=f"/{name}{suffix}"))


SPEC_DOC = yaml.safe_load(SPEC.read_text())
BASE = SPEC_DOC["servers"][0]["url"]
_REGISTRY = Registry().with_resource("spec", Resource(contents=SPEC_DOC, specification=DRAFT4))
_ROUTES = [
    (re.compile("^" + BASE + re.sub(r"\{[^}/]+\}", "[^/]+", path) + "$"), item)
    for path, item in SPEC_DOC["paths"].items()
]


# Every other declared header is sent on every response of its status; this one only on a replay.
ONLY_SOMETIMES = {"Idempotent-Replayed"}


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = _REGISTRY.resolver("spec").lookup("spec" + node["$ref"]).contents
    return node


def assert_matches_spec(response: httpx.Response) -> None:
    """Fail when a response's status, content type or body is not what openapi/chat.yaml declares for it."""
    response.read()
    request = response.request
    if request.method == "HEAD":
        assert response.status_code == 405, f"HEAD {request.url.path} is not in the spec"
        assert response.headers["allow"], "a 405 names the allowed methods"
        return
    item = next((item for rx, item in _ROUTES if rx.match(request.url.path)), None)
    operation = item and item.get(request.method.lower())
    declared = operation["responses"] if operation is not None else {}
    is_declared = str(response.status_code) in declared
    declared_response = _resolve(declared.get(str(response.status_code), {}))
    # An undeclared answer is an error, which is JSON; a declared one may be a file's bytes, or nothing (304).
    content = declared_response.get("content", {}) if is_declared else {"application/json": None}
    if "application/json" in content:
        assert response.headers.get("content-type", "").startswith("application/json"), response.text[:300]
        body = response.json()
    else:  # a download (a file's own type) or a 304 (no body)
        assert content or response.content == b"", f"{response.status_code} has a body it does not declare"
    if operation is None:
        assert response.status_code in (404, 405), f"{request.method} {request.url.path} is not in the spec"
        assert set(body) == {"error"}, body
        return
    assert str(response.status_code) in declared, (
        f"{request.method} {request.url.path} sent undeclared {response.status_code}: {response.text[:300]}"
    )
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        OAS30Validator(schema, registry=_REGISTRY, _resolver=_REGISTRY.resolver("spec")).validate(body)
    for name, header in declared_response.get("headers", {}).items():
        if name in ONLY_SOMETIMES and name not in response.headers:
            continue
        assert name in response.headers, f"{request.method} {request.url.path} did not send its {name} header"
        allowed = _resolve(header)["schema"].get("enum")
        assert allowed is None or response.headers[name] in allowed, f"{name}: {response.headers[name]}"


_REPORT_KEY = "chat_report_lines"
_reports_from_workers: list[str] = []


def write_report(config: pytest.Config, lines: list[str]) -> None:
    """Write lines to the terminal now; from an xdist worker, whose own output nobody sees, send them to the
    controller, which writes them in its summary at the end."""
    if hasattr(config, "workeroutput"):
        config.workeroutput.setdefault(_REPORT_KEY, []).extend(lines)
        return
    writer = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines if writer is not None else ():
        writer.write_line(line)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """(xdist's hook, on the controller) A worker finished: keep what it reported."""
    _reports_from_workers.extend(getattr(node, "workeroutput", {}).get(_REPORT_KEY, []))


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _reports_from_workers:
        terminalreporter.write_line(line)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.db'}"
        return
    own_uploads(monkeypatch, tmp_path)
    yield fresh_postgres()


def fresh_postgres() -> str:
    """The test PostgreSQL database's URL, its public schema emptied; skips (fails under CI) when it is down. Under
    xdist it is this worker's own database (created if it is missing)."""
    try:
        url = _worker_database() if XDIST_WORKER else POSTGRES_URL
        probe = peewee.PostgresqlDatabase(None)
        probe.init(**_pg_kwargs(url))
        probe.connect()
    except (peewee.OperationalError, psycopg2.OperationalError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    with probe:
        probe.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    probe.close()
    return url


def _pg_kwargs(url: str = POSTGRES_URL) -> dict:
    from playhouse.db_url import parse

    return parse(url)


# This worker's database and the connection that holds its lock (WORKER_DATABASE_LOCK) until the worker exits.
_worker_url: str | None = None
_worker_lock_holder = None


def _worker_database() -> str:
    """This xdist worker's database (test_gw0), made with CREATE DATABASE from the server's `postgres` database if it
    is missing, so that a fresh machine works the first time; held for as long as the worker runs. If another pytest
    run holds it, the next choice (test_gw0_2, ...)."""
    global _worker_url, _worker_lock_holder
    if _worker_url is not None:
        return _worker_url
    for choice in range(1, WORKER_DATABASE_CHOICES + 1):
        url = worker_postgres_url(POSTGRES_URL, XDIST_WORKER, choice)
        _create_database(url)
        holder = psycopg2.connect(url, connect_timeout=5)
        holder.autocommit = True
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", WORKER_DATABASE_LOCK)
            if cursor.fetchone()[0]:
                _worker_url, _worker_lock_holder = url, holder
                return url
        holder.close()
    raise RuntimeError(f"other test runs hold all {WORKER_DATABASE_CHOICES} databases of worker {XDIST_WORKER}")


def _create_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=5)
    admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                # DuplicateDatabase: another run on this machine made it in between.
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()


@pytest.fixture
def app(database_url, tmp_path, monkeypatch):
    if not database_url.startswith("sqlite"):
        own_uploads(monkeypatch, tmp_path)  # for a module's own database_url too
    application = create_app(database_url, validate_responses=True, password_profile="cheapest")
    yield application
    models.db.close_all()


def own_uploads(monkeypatch: pytest.MonkeyPatch, directory) -> None:
    """Keep a PostgreSQL app's uploaded files under `directory` (unless the test chose a store). Their default,
    uploads/ in the working directory, is the checkout, which every xdist worker shares: one worker's app wipes the
    spools there as it starts, and collects blobs another's database still holds. SQLite's default is already the
    test's own, beside its database file."""
    if "CHAT_UPLOADS" not in os.environ:
        monkeypatch.setenv("CHAT_UPLOADS", str(Path(directory) / "uploads"))


@pytest.fixture
def client(app):
    """An anonymous client; every response it gets must match the spec."""
    return new_client(app)


def new_client(app, **kwargs) -> httpx.Client:
    test_client = app.test_client(**kwargs)
    test_client.event_hooks["response"] = [assert_matches_spec]
    return test_client


@dataclass
class Person:
    id: int
    name: str
    password: str
    client: httpx.Client


_names = itertools.count(1)


@pytest.fixture
def make_user(app):
    """Register a user through the API and hand back a client logged in as them."""

    def make(name: str | None = None, password: str = "correct horse") -> Person:
        name = name or f"user{next(_names)}"
        person_client = new_client(app)
        response = person_client.post(
            "/api/user/0", data={"name": name, "password": password, "email": f"{name}@example.com"}
        )
        assert response.status_code == 201, response.text
        return Person(response.json()["id"], name, password, person_client)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def make_chat():
    def make(person: Person, title: str = "general", members: tuple[Person, ...] = ()) -> int:
        response = person.client.post("/api/chats", data={"title": title})
        assert response.status_code == 201, response.text
        chat_id = response.json()["id"]
        for member in members:
            join(person, chat_id, member)
        return chat_id

    return make


def join(adder: Person, chat_id: int, member: Person) -> None:
    """Bring the member into the adder's chat: added at once, or invited (a stranger, by default) and accepting."""
    added = adder.client.post(f"/api/chats/{chat_id}/members", data={"user_id": member.id})
    assert added.status_code in (201, 202), added.text
    if added.status_code == 202:
        accepted = member.client.post(f"/api/invitations/{added.json()['id']}")
        assert accepted.status_code == 200, accepted.text


@pytest.fixture
def invite():
    """Invite a stranger and hand back the invitation's id."""

    def make(adder: Person, chat_id: int, member: Person) -> int:
        added = adder.client.post(f"/api/chats/{chat_id}/members", data={"user_id": member.id})
        assert added.status_code == 202, added.text
        return added.json()["id"]

    return make


@pytest.fixture
def send():
    def send_message(person: Person, chat_id: int, content: str) -> int:
        response = person.client.post(f"/api/chats/{chat_id}", data={"content": content})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    return send_message


@contextlib.contextmanager
def write_lock_held_by_another_thread():
    """Another thread in a write transaction, as a long delete would be, until the event it yields is set."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with models.db.connection_context(), models.db.atomic():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


# The live-server harness of tests/test_races_conversations.py, shared by the modules that run people against a
# chat-server of their own: each such module has a `backend` fixture (a running server and its database).


@pytest.fixture
def people(backend):
    """A function that registers people on the module's live server; their clients are closed after the test."""
    from tests.test_races_conversations import registering  # a test module, which imports this one

    with registering(backend) as make:
        yield make


@pytest.fixture
def streams():
    """Open an event stream for each person and wait until each is live; all are closed after the test."""
    opened = []

    def open_(*people_):
        started = [person.stream() for person in people_]
        opened.extend(started)
        for stream in started:
            stream.ready()
        return started

    yield open_
    for stream in opened:
        stream.close()
