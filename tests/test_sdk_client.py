"""The client openapi-python-client generates from openapi/chat.yaml, driven against a live chat-server."""

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import ModuleType

import pytest

from chat_server.app import SPEC
from tests.live_server import live_server

pytest.importorskip("openapi_python_client", reason="openapi-python-client is not installed; run `tox -e sdk`")

pytestmark = pytest.mark.sdk

PACKAGE = "chat_api_client"
# The generator's default post-hooks run ruff over its output and warn when ruff is missing; that warning says
# nothing about the spec, so the hooks are off and any warning left is about openapi/chat.yaml.
GENERATOR_CONFIG = "post_hooks: []\n"


@dataclass
class GeneratedSdk:
    package: ModuleType
    models: ModuleType

    def call(self, operation: str, **kwargs):
        """Call `<tag>.<operationId>` through its generated module, `chat_api_client.api.<tag>.<operationId>`."""
        return importlib.import_module(f"{PACKAGE}.api.{operation}").sync_detailed(**kwargs)


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """Generate the client from the spec, failing on any generator warning, and pip-install it into a temp dir."""
    workdir = tmp_path_factory.mktemp("sdk")
    config = workdir / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    source = workdir / "chat-api-client"
    generated = subprocess.run(
        [
            *(sys.executable, "-m", "openapi_python_client", "generate"),
            *("--path", str(SPEC), "--output-path", str(source)),
            *("--meta", "setup", "--config", str(config), "--fail-on-warning"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=False,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, f"openapi-python-client failed:\n{output}"
    assert "warning" not in output.lower(), f"openapi-python-client warned about the spec:\n{output}"

    # --target keeps the install out of whichever environment runs the tests. --no-deps: httpx and attrs, the
    # client's only dependencies, are already here. pip fetches setuptools to build it, as for the project itself.
    site = workdir / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, (
        f"pip could not install the generated client:\n{installed.stdout}{installed.stderr}"
    )

    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        package = importlib.import_module(PACKAGE)
        assert package.__file__.startswith(str(site)), package.__file__
        yield GeneratedSdk(package=package, models=importlib.import_module(f"{PACKAGE}.models"))
    finally:
        sys.path.remove(str(site))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def server():
    # The scenarios add people who never met to chats, as on a private server (--default-who-can-add-me).
    with live_server("--default-who-can-add-me", "anyone") as running:
        yield running


@pytest.fixture
def new_client(sdk, server):
    """A generated `Client` for the live server; its httpx cookie jar keeps the session cookies."""
    made = []

    def make(**kwargs):
        client = sdk.package.Client(base_url=server.api_url, raise_on_unexpected_status=True, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.get_httpx_client().close()


@dataclass
class Account:
    id: int
    name: str
    password: str
    client: object


@pytest.fixture
def register(sdk, new_client):
    """Register a user through the generated client; the returned client holds their session cookies."""

    def make(name: str, password: str = "correct horse") -> Account:
        client = new_client()
        body = sdk.models.NewUser(name=name, password=password, email=f"{name}@example.com")
        response = sdk.call("users.register_user", client=client, user_id=0, body=body)
        assert response.status_code == HTTPStatus.CREATED, response.content
        assert isinstance(response.parsed, sdk.models.Created)
        return Account(response.parsed.id, name, password, client)

    return make


@pytest.fixture
def chat_with_bob(sdk, register):
    """Alice's chat "general", with Bob added as a member."""
    alice, bob = register("alice"), register("bob")
    created = sdk.call("chats.create_chat", client=alice.client, body=sdk.models.ChatTitle(title="general"))
    assert created.status_code == HTTPStatus.CREATED, created.content
    newcomer = sdk.models.NewMember(user_id=bob.id)
    added = sdk.call("members.add_member", client=alice.client, chat_id=created.parsed.id, body=newcomer)
    assert added.status_code == HTTPStatus.CREATED, added.content
    return created.parsed.id, alice, bob


def send(sdk, account: Account, chat_id: int, content: str) -> int:
    body = sdk.models.NewMessage(content=content)
    response = sdk.call("messages.send_message", client=account.client, chat_id=chat_id, body=body)
    assert response.status_code == HTTPStatus.CREATED, response.content
    return response.parsed.id


def messages(sdk, account: Account, chat_id: int) -> list:
    response = sdk.call("messages.list_messages", client=account.client, chat_id=chat_id)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.parsed.messages


def test_generated_client_has_a_module_per_operation(sdk):
    operations = [
        "auth.login",
        "auth.logout",
        "auth.end_session",
        "auth.get_session",
        "auth.change_password",
        "users.register_user",
        "users.get_user",
        "users.update_user",
        "users.delete_user",
        "chats.list_chats",
        "chats.create_chat",
        "chats.rename_chat",
        "chats.leave_chat",
        "messages.list_messages",
        "messages.get_message",
        "messages.search_messages",
        "messages.send_message",
        "messages.edit_message",
        "messages.delete_message",
        "members.list_members",
        "members.add_member",
        "invitations.list_invitations",
        "invitations.accept_invitation",
        "invitations.decline_invitation",
        "chats.mark_read",
        "events.get_events",
        "operations.get_health",
        "operations.get_ready",
    ]
    for operation in operations:
        module = importlib.import_module(f"{PACKAGE}.api.{operation}")
        assert callable(module.sync_detailed), operation
    generated = {path.stem for path in Path(sdk.package.__file__).parent.glob("api/*/*.py")} - {"__init__"}
    assert generated == {operation.split(".")[1] for operation in operations}


def test_readme_example_runs_as_written(sdk, register, server, capsys):
    alice = register("alice")
    sdk.call("chats.create_chat", client=alice.client, body=sdk.models.ChatTitle(title="general"))
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    assert "http://127.0.0.1:8080/api" in example

    exec(compile(example.replace("http://127.0.0.1:8080/api", server.api_url), "README.md", "exec"), {})

    assert capsys.readouterr().out.strip() == "['general']"


def test_register_user_sets_session_cookies_in_the_client_jar(sdk, register):
    alice = register("alice")

    assert alice.id >= 1
    jar = alice.client.get_httpx_client().cookies
    assert jar["user_id"] == str(alice.id)
    assert len(jar["token"]) >= 16


def test_login_starts_a_session_for_the_same_user(sdk, new_client, register):
    alice = register("alice")
    client = new_client()

    body = sdk.models.Credentials(name="alice", password=alice.password)
    response = sdk.call("auth.login", client=client, body=body)

    assert response.status_code == HTTPStatus.OK, response.content
    assert response.parsed.id == alice.id
    assert response.headers["location"] == "/api/chats"
    assert client.get_httpx_client().cookies["user_id"] == str(alice.id)


def test_login_wrong_password_is_400(sdk, new_client, register):
    register("alice")
    client = new_client()

    response = sdk.call(
        "auth.login", client=client, body=sdk.models.Credentials(name="alice", password="not it at all")
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert isinstance(response.parsed, sdk.models.Error)
    assert "token" not in client.get_httpx_client().cookies


def test_add_member_shows_the_chat_to_the_new_member(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob

    members = sdk.call("members.list_members", client=bob.client, chat_id=chat_id)
    chats = sdk.call("chats.list_chats", client=bob.client)

    assert members.status_code == HTTPStatus.OK, members.content
    assert [(m.id, m.name) for m in members.parsed.members] == [(alice.id, "alice"), (bob.id, "bob")]
    assert chats.status_code == HTTPStatus.OK, chats.content
    assert [(c.id, c.title, c.last_message) for c in chats.parsed.chats] == [(chat_id, "general", None)]


def test_list_messages_returns_both_members_messages_oldest_first(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    sent = [send(sdk, alice, chat_id, "hi bob"), send(sdk, bob, chat_id, "hi alice"), send(sdk, alice, chat_id, "bye")]

    listed = messages(sdk, bob, chat_id)

    assert [(m.id, m.sender_id, m.content) for m in listed] == [
        (sent[0], alice.id, "hi bob"),
        (sent[1], bob.id, "hi alice"),
        (sent[2], alice.id, "bye"),
    ]
    assert listed[0].time <= listed[1].time <= listed[2].time
    assert listed[0].time.utcoffset().total_seconds() == 0


def test_delete_message_removes_it_from_the_chat(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    kept = send(sdk, alice, chat_id, "keep me")
    doomed = send(sdk, alice, chat_id, "delete me")

    deleted = sdk.call("messages.delete_message", client=alice.client, chat_id=chat_id, id=doomed)
    again = sdk.call("messages.delete_message", client=alice.client, chat_id=chat_id, id=doomed)

    assert deleted.status_code == HTTPStatus.OK, deleted.content
    assert deleted.parsed.status.value == "ok"
    assert [(m.id, m.content) for m in messages(sdk, bob, chat_id)] == [(kept, "keep me")]
    assert again.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(again.parsed, sdk.models.Error)


def test_delete_message_of_someone_else_is_403(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    message_id = send(sdk, alice, chat_id, "mine")

    response = sdk.call("messages.delete_message", client=bob.client, chat_id=chat_id, id=message_id)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert [m.id for m in messages(sdk, alice, chat_id)] == [message_id]


def test_logout_revokes_the_old_token(sdk, new_client, register):
    alice = register("alice")
    old_cookies = dict(alice.client.get_httpx_client().cookies)

    logged_out = sdk.call("auth.logout", client=alice.client)
    replayed = sdk.call("chats.list_chats", client=new_client(cookies=old_cookies))

    assert logged_out.status_code == HTTPStatus.OK, logged_out.content
    assert logged_out.parsed.status.value == "ok"
    assert "token" not in alice.client.get_httpx_client().cookies
    assert replayed.status_code == HTTPStatus.UNAUTHORIZED, replayed.content
    assert isinstance(replayed.parsed, sdk.models.Error)


def test_logout_keeps_the_users_other_sessions(sdk, new_client, register):
    alice = register("alice")
    laptop = new_client()
    assert sdk.call("auth.login", client=laptop, body=sdk.models.Credentials(name="alice", password=alice.password))

    assert sdk.call("auth.logout", client=alice.client).status_code == HTTPStatus.OK
    response = sdk.call("chats.list_chats", client=laptop)

    assert response.status_code == HTTPStatus.OK, response.content
    assert response.parsed.chats == []


def test_get_events_json_and_mark_read_through_the_generated_client(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    bob.client.get_httpx_client().headers["Accept"] = "application/json"  # the JSON form, not the stream
    as_json = bob.client
    start = sdk.call("events.get_events", client=as_json)
    assert start.status_code == HTTPStatus.OK, start.content
    message_id = send(sdk, alice, chat_id, "see you")
    batch = sdk.call("events.get_events", client=as_json, last_event_id_query=start.parsed.last_event_id).parsed
    assert [event.type_ for event in batch.events] == ["message.created"]
    assert batch.events[0].data.message.id == message_id
    body = sdk.models.ReadUpTo(message_id=message_id)
    marked = sdk.call("chats.mark_read", client=bob.client, chat_id=chat_id, body=body)
    assert marked.status_code == HTTPStatus.OK and marked.parsed.last_read_id == message_id
    listed = sdk.call("chats.list_chats", client=bob.client).parsed.chats
    assert (listed[0].last_read_id, listed[0].unread_count) == (message_id, 0)
