"""The client openapi-python-client generates from openapi/chat.yaml, driven against a live chat-server."""

import hashlib
import importlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from chat_server.app import SPEC
from tests.live_server import live_server

pytest.importorskip("openapi_python_client", reason="openapi-python-client is not installed; run `tox -e sdk`")

pytestmark = pytest.mark.sdk

PACKAGE = "chat_api_client"
# The generator's default post-hooks run ruff over its output and warn when ruff is missing; that warning says
# nothing about the spec, so the hooks are off and any warning left is about openapi/chat.yaml.
# Downloads answer `*/*` (a file's bytes in whatever type they show). openapi-python-client 0.29.1 parses only
# application/json, application/octet-stream and text/* responses: it warns about `*/*` and leaves those responses
# out. Read as application/octet-stream, the download functions hand back the bytes as a `File`.
GENERATOR_CONFIG = """\
post_hooks: []
content_type_overrides:
  "*/*": application/octet-stream
"""


@dataclass
class GeneratedSdk:
    package: ModuleType
    models: ModuleType
    types: ModuleType

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
        models, types = (importlib.import_module(f"{PACKAGE}.{name}") for name in ("models", "types"))
        yield GeneratedSdk(package=package, models=models, types=types)
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
        "uploads.upload_file",
        "uploads.download_upload",
        "uploads.download_named_upload",
        "uploads.download_thumbnail",
        "users.set_avatar",
        "users.remove_avatar",
        "reactions.add_reaction",
        "reactions.remove_reaction",
        "reactions.list_reactors",
        "threads.list_thread",
        "threads.follow_thread",
        "threads.unfollow_thread",
        "threads.mark_thread_read",
        "threads.list_threads",
        "chats.get_chat_settings",
        "chats.update_chat_settings",
        "chats.open_direct_chat",
        "pins.list_pins",
        "pins.pin_message",
        "pins.unpin_message",
        "presence.set_typing",
        "presence.list_typing",
        "presence.get_presence",
        "presence.set_presence",
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


def test_typing_and_presence_through_the_generated_client(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    typing = sdk.call("presence.set_typing", client=alice.client, chat_id=chat_id, body=sdk.models.TypingChange(
        op=sdk.models.TypingChangeOp.START))  # fmt: skip
    assert (typing.status_code, typing.content) == (HTTPStatus.NO_CONTENT, b"")
    now = sdk.call("presence.list_typing", client=bob.client, chat_id=chat_id).parsed.typing
    assert [(t.user_id, t.active) for t in now] == [(alice.id, True)]
    change = sdk.models.PresenceChange(status_text="on call")
    mine = sdk.call("presence.set_presence", client=alice.client, body=change).parsed
    assert (mine.user_id, mine.state, mine.status_text) == (alice.id, sdk.models.PresenceState.OFFLINE, "on call")
    asked = sdk.call("presence.get_presence", client=bob.client, user_ids=[alice.id, 999_999]).parsed.presence
    assert [(answer.user_id, answer.state.value, answer.status_text) for answer in asked] == [
        (alice.id, "offline", "on call"),  # no stream open: offline, with the text she set
        (999_999, "unknown", ""),
    ]


def png_bytes(width: int, height: int) -> bytes:
    """A real PNG of width by height pixels: red, with one green pixel in the bottom right corner."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.putpixel((width - 1, height - 1), (10, 200, 90))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def upload(sdk, account: Account, data: bytes, file_name: str, mime_type: str = "image/png", **fields):
    """Upload through the generated `upload_file` (multipart/form-data, a `File` in the `NewUpload` model).

    The generated function sets `Content-Type: multipart/form-data; boundary=+++` itself, and httpx keeps that fixed
    boundary: fine for these bytes, though a file holding the line `--+++` would be cut short there."""
    file = sdk.types.File(payload=io.BytesIO(data), file_name=file_name, mime_type=mime_type)
    response = sdk.call("uploads.upload_file", client=account.client, body=sdk.models.NewUpload(file=file, **fields))
    assert response.status_code == HTTPStatus.CREATED, response.content
    assert isinstance(response.parsed, sdk.models.Upload), response.content
    assert response.headers["location"] == f"/api/uploads/{response.parsed.id}"
    return response.parsed


def test_upload_send_as_attachment_read_history_and_download_through_the_generated_client(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    picture = png_bytes(7, 5)

    uploaded = upload(sdk, alice, picture, "dot.png")

    assert (uploaded.name, uploaded.content_type, uploaded.size) == ("dot.png", "image/png", len(picture))
    assert (uploaded.width, uploaded.height) == (7, 5)
    assert uploaded.sha256 == hashlib.sha256(picture).hexdigest()
    assert uploaded.url == f"/api/uploads/{uploaded.id}/dot.png"
    assert uploaded.thumbnail_url == f"/api/uploads/{uploaded.id}/thumbnail"

    # Files only: `content` is left out (UNSET), and the generated model sends just `attachments`.
    sent = sdk.call(
        "messages.send_message",
        client=alice.client,
        chat_id=chat_id,
        body=sdk.models.NewMessage(attachments=[uploaded.id]),
    )
    assert sent.status_code == HTTPStatus.CREATED, sent.content

    [message] = messages(sdk, bob, chat_id)
    assert (message.id, message.sender_id, message.content) == (sent.parsed.id, alice.id, "")
    assert [attachment.to_dict() for attachment in message.attachments] == [
        {
            "id": uploaded.id,
            "name": "dot.png",
            "content_type": "image/png",
            "size": len(picture),
            "url": uploaded.url,
            "thumbnail_url": uploaded.thumbnail_url,
            "width": 7,
            "height": 5,
        }
    ]

    # Bob, a member of the chat the message is in, downloads it: the same bytes, with the SHA-256 as ETag.
    downloaded = sdk.call("uploads.download_upload", client=bob.client, upload_id=uploaded.id)
    assert downloaded.status_code == HTTPStatus.OK, downloaded.content
    assert isinstance(downloaded.parsed, sdk.types.File)
    assert downloaded.parsed.payload.read() == picture
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["etag"] == f'"{uploaded.sha256}"'
    named = sdk.call("uploads.download_named_upload", client=bob.client, upload_id=uploaded.id, filename="dot.png")
    assert named.status_code == HTTPStatus.OK and named.parsed.payload.read() == picture

    # The generated function sends `Range` and `If-None-Match` headers and parses the 206 and 304 they bring.
    part = sdk.call("uploads.download_upload", client=bob.client, upload_id=uploaded.id, range_="bytes=1-3")
    assert part.status_code == HTTPStatus.PARTIAL_CONTENT, part.content
    assert part.parsed.payload.read() == picture[1:4]
    assert part.headers["content-range"] == f"bytes 1-3/{len(picture)}"
    unchanged = sdk.call(
        "uploads.download_upload", client=bob.client, upload_id=uploaded.id, if_none_match=downloaded.headers["etag"]
    )
    assert (unchanged.status_code, unchanged.content) == (HTTPStatus.NOT_MODIFIED, b"")

    thumbnail = sdk.call("uploads.download_thumbnail", client=bob.client, upload_id=uploaded.id)
    assert thumbnail.status_code == HTTPStatus.OK, thumbnail.content
    with Image.open(thumbnail.parsed.payload) as shown:
        assert (shown.format, shown.size) == ("WEBP", (7, 5))


def test_upload_of_someone_else_is_404_until_it_is_in_a_shared_chat(sdk, chat_with_bob, register):
    chat_id, alice, bob = chat_with_bob
    carol = register("carol")
    uploaded = upload(sdk, alice, png_bytes(2, 2), "secret.png")

    before = sdk.call("uploads.download_upload", client=bob.client, upload_id=uploaded.id)
    assert before.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(before.parsed, sdk.models.Error)
    # Bob cannot send alice's upload either: it is not one of his.
    stolen = sdk.call(
        "messages.send_message",
        client=bob.client,
        chat_id=chat_id,
        body=sdk.models.NewMessage(attachments=[uploaded.id]),
    )
    assert stolen.status_code == HTTPStatus.NOT_FOUND, stolen.content

    body = sdk.models.NewMessage(content="look", attachments=[uploaded.id])
    assert sdk.call("messages.send_message", client=alice.client, chat_id=chat_id, body=body).status_code == 201
    after = sdk.call("uploads.download_upload", client=bob.client, upload_id=uploaded.id)
    outsider = sdk.call("uploads.download_upload", client=carol.client, upload_id=uploaded.id)

    assert after.status_code == HTTPStatus.OK and after.parsed.payload.read() == png_bytes(2, 2)
    assert outsider.status_code == HTTPStatus.NOT_FOUND


def test_upload_of_a_file_that_is_no_image_under_a_name_part(sdk, register):
    alice = register("alice")
    data = b"%PDF-1.4\n% not really a document\n"

    # The multipart `name` part (a str in the model) wins over the file part's filename, sanitised.
    uploaded = upload(sdk, alice, data, "ignored.bin", "application/octet-stream", name="q3/report\u202e.pdf")

    assert (uploaded.name, uploaded.size) == ("q3_report.pdf", len(data))
    assert uploaded.content_type == "application/pdf"
    assert (uploaded.width, uploaded.height, uploaded.thumbnail_url) == (None, None, None)
    assert uploaded.sha256 == hashlib.sha256(data).hexdigest()
    downloaded = sdk.call("uploads.download_upload", client=alice.client, upload_id=uploaded.id)
    assert downloaded.parsed.payload.read() == data
    assert downloaded.headers["content-disposition"].startswith("attachment")
    thumbnail = sdk.call("uploads.download_thumbnail", client=alice.client, upload_id=uploaded.id)
    assert thumbnail.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(thumbnail.parsed, sdk.models.Error)


def test_set_and_remove_avatar_through_the_generated_client(sdk, register):
    # Bob shares no chat with alice: an avatar is there for any logged-in user to see.
    alice, bob = register("alice"), register("bob")
    uploaded = upload(sdk, alice, png_bytes(9, 4), "me.png")

    chosen = sdk.models.AvatarChoice(upload_id=uploaded.id)
    for_bob = sdk.call("users.set_avatar", client=bob.client, user_id=alice.id, body=chosen)
    set_ = sdk.call("users.set_avatar", client=alice.client, user_id=alice.id, body=chosen)

    assert for_bob.status_code == HTTPStatus.FORBIDDEN
    assert set_.status_code == HTTPStatus.OK, set_.content
    assert set_.parsed.user.avatar_url == uploaded.thumbnail_url
    seen = sdk.call("users.get_user", client=bob.client, user_id=alice.id)
    assert seen.parsed.user.avatar_url == uploaded.thumbnail_url
    avatar = sdk.call("uploads.download_thumbnail", client=bob.client, upload_id=uploaded.id)
    assert avatar.status_code == HTTPStatus.OK
    with Image.open(avatar.parsed.payload) as shown:
        assert shown.size == (9, 4)

    removed = sdk.call("users.remove_avatar", client=alice.client, user_id=alice.id)

    assert removed.status_code == HTTPStatus.OK, removed.content
    assert removed.parsed.user.avatar_url is None
    assert sdk.call("users.get_user", client=bob.client, user_id=alice.id).parsed.user.avatar_url is None


# A repeated `attachments` field (attachments=7&attachments=8) once kept only the last id; it is refused with 400 now,
# like any other repeated field, and nothing is stored.
def test_send_message_with_two_attachments_from_the_generated_client_keeps_both_or_is_refused(sdk, chat_with_bob):
    chat_id, alice, bob = chat_with_bob
    first, second = upload(sdk, alice, png_bytes(3, 3), "one.png"), upload(sdk, alice, png_bytes(4, 4), "two.png")
    body = sdk.models.NewMessage(content="two files", attachments=[first.id, second.id])
    # openapi-python-client 0.29.1 ignores the spec's `encoding: {attachments: {explode: false}}` and hands the list
    # to httpx, which repeats the field instead of sending the contract's `attachments=7,8`.
    request = alice.client.get_httpx_client().build_request(
        **importlib.import_module(f"{PACKAGE}.api.messages.send_message")._get_kwargs(chat_id, body=body)
    )
    assert request.read() == f"content=two+files&attachments={first.id}&attachments={second.id}".encode()

    sent = sdk.call("messages.send_message", client=alice.client, chat_id=chat_id, body=body)

    if sent.status_code == HTTPStatus.BAD_REQUEST:  # refused outright: nothing was stored
        assert messages(sdk, bob, chat_id) == []
        return
    assert sent.status_code == HTTPStatus.CREATED, sent.content
    [message] = messages(sdk, bob, chat_id)
    assert [attachment.id for attachment in message.attachments] == [first.id, second.id]
