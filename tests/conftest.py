"""Fixtures: a fresh database per test (SQLite file, or the real PostgreSQL), the real app, and clients whose every
response is checked against openapi/chat.yaml."""

import contextlib
import itertools
import os
import re
import threading
from dataclasses import dataclass

import httpx
import peewee
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from chat_server import models
from chat_server.app import SPEC, create_app

POSTGRES_URL = os.environ.get("CHAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
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
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body = response.json()
    item = next((item for rx, item in _ROUTES if rx.match(request.url.path)), None)
    operation = item and item.get(request.method.lower())
    if operation is None:
        assert response.status_code in (404, 405), f"{request.method} {request.url.path} is not in the spec"
        assert set(body) == {"error"}, body
        return
    declared = operation["responses"]
    assert str(response.status_code) in declared, (
        f"{request.method} {request.url.path} sent undeclared {response.status_code}: {response.text}"
    )
    declared_response = _resolve(declared[str(response.status_code)])
    schema = declared_response["content"]["application/json"]["schema"]
    OAS30Validator(schema, registry=_REGISTRY, _resolver=_REGISTRY.resolver("spec")).validate(body)
    for name, header in declared_response.get("headers", {}).items():
        if name in ONLY_SOMETIMES and name not in response.headers:
            continue
        assert name in response.headers, f"{request.method} {request.url.path} did not send its {name} header"
        allowed = _resolve(header)["schema"].get("enum")
        assert allowed is None or response.headers[name] in allowed, f"{name}: {response.headers[name]}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.db'}"
        return
    yield fresh_postgres()


def fresh_postgres() -> str:
    """The test PostgreSQL database's URL, its public schema emptied; skips (fails under CI) when it is down."""
    probe = peewee.PostgresqlDatabase(None)
    probe.init(**_pg_kwargs())
    try:
        probe.connect()
    except peewee.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    with probe:
        probe.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    probe.close()
    return POSTGRES_URL


def _pg_kwargs() -> dict:
    from playhouse.db_url import parse

    return parse(POSTGRES_URL)


@pytest.fixture
def app(database_url):
    application = create_app(database_url, validate_responses=True, password_profile="cheapest")
    yield application
    models.db.close_all()


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
