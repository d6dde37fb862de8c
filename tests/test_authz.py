"""The authorization matrix: every operation in openapi/chat.yaml, sent by every kind of caller, and the status each
must get. An operation added to the spec without a row here fails."""

import datetime
import functools
import itertools
import operator
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from chat_server import models
from chat_server.app import create_app
from tests.conftest import BASE, SPEC_DOC, Person, fresh_postgres, new_client, own_uploads

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The first five hold no live session of their own; the last three are logged in as themselves.
ACTORS = ("anonymous", "forged", "other_user_id", "revoked", "expired", "non_member", "member", "owner")
NO_SESSION = dict.fromkeys(ACTORS[:5], 401)

# The target of every operation is the owner's chat, the owner's message in it (the root of a thread with one reply of
# the owner's), the owner's account, or the invitation the non-member sent the owner. The member is in that chat but
# sent nothing; the non-member shares no chat with the owner.
#
# Issue 24's operations on a chat's conversation hide the chat from a non-member (conversations/rules.py,
# require_member): 404, as for a chat that does not exist, where the older chat operations say 403.
HIDDEN_FROM_NON_MEMBERS = {**NO_SESSION, "non_member": 404, "member": 200, "owner": 200}
MATRIX = {
    # Unsecured (`security: []`): cookies are ignored and the form decides; it is valid for everyone here.
    "login": dict.fromkeys(ACTORS, 200),
    "register_user": dict.fromkeys(ACTORS, 201),
    # Health checks for load balancers: no session needed, none looked at.
    "get_health": dict.fromkeys(ACTORS, 200),
    "get_ready": dict.fromkeys(ACTORS, 200),
    # Each logged-in actor ends their own session.
    "logout": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    "end_session": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # Each logged-in actor learns who they are, and no one else.
    "get_session": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # The owner's account: only the owner may change it, whoever else shares a chat with them.
    "change_password": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    "update_user": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    "delete_user": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    # A directory: anyone logged in finds anyone (who sees the email: GET_USER_EMAIL_SHOWN).
    "get_user": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # Not about the owner's chat at all: each actor's own list, new chat, or events.
    "list_chats": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    "create_chat": {**NO_SESSION, "non_member": 201, "member": 201, "owner": 201},
    "get_events": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # The owner's chat: any member may, the creator has no more rights than others.
    "list_messages": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    "send_message": {**NO_SESSION, "non_member": 403, "member": 201, "owner": 201},
    "rename_chat": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    "leave_chat": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    "list_members": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    # A member adds a stranger to the chat: an invitation (202), since the stranger never said they may be added.
    "add_member": {**NO_SESSION, "non_member": 403, "member": 202, "owner": 202},
    "mark_read": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    "get_message": {**NO_SESSION, "non_member": 403, "member": 200, "owner": 200},
    # Each actor's own chats: a search never reaches into a chat the caller is not in.
    "search_messages": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # The owner's message: only its sender edits or deletes it, not another member.
    "edit_message": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    "delete_message": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    # Each actor's own invitations; only the invitee (the owner) answers one, not its sender (the non-member).
    "list_invitations": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    "accept_invitation": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    "decline_invitation": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    # Each actor stores a file of their own.
    "upload_file": {**NO_SESSION, "non_member": 201, "member": 201, "owner": 201},
    # The owner's image, attached to a message in the owner's chat: its uploader and the chat's members read it; for
    # anyone else it does not exist.
    "download_upload": {**NO_SESSION, "non_member": 404, "member": 200, "owner": 200},
    "download_named_upload": {**NO_SESSION, "non_member": 404, "member": 200, "owner": 200},
    "download_thumbnail": {**NO_SESSION, "non_member": 404, "member": 200, "owner": 200},
    # The owner's avatar: only the owner sets or removes it.
    "set_avatar": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    "remove_avatar": {**NO_SESSION, "non_member": 403, "member": 403, "owner": 200},
    # Reactions to the owner's message: any member adds and takes back their own (taking back one they never made is
    # a 200 that changes nothing) and lists who reacted.
    "add_reaction": HIDDEN_FROM_NON_MEMBERS,
    "remove_reaction": HIDDEN_FROM_NON_MEMBERS,
    "list_reactors": HIDDEN_FROM_NON_MEMBERS,
    # The thread of the owner's message: any member reads, follows, stops following and marks it read.
    "list_thread": HIDDEN_FROM_NON_MEMBERS,
    "follow_thread": HIDDEN_FROM_NON_MEMBERS,
    "unfollow_thread": HIDDEN_FROM_NON_MEMBERS,
    "mark_thread_read": HIDDEN_FROM_NON_MEMBERS,
    # Each actor's own followed threads.
    "list_threads": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    # Each member's own alert settings for the chat.
    "get_chat_settings": HIDDEN_FROM_NON_MEMBERS,
    "update_chat_settings": HIDDEN_FROM_NON_MEMBERS,
    # Any member pins and unpins (unpinning what is not pinned changes nothing), until chats have roles.
    "list_pins": HIDDEN_FROM_NON_MEMBERS,
    "pin_message": HIDDEN_FROM_NON_MEMBERS,
    "unpin_message": HIDDEN_FROM_NON_MEMBERS,
    # A direct chat with the owner follows the owner's who_can_add_me (the default, contacts): the member shares the
    # chat the owner made, so may; the non-member shares none, so may not. The owner's is a chat with themselves.
    # Every cell has users of its own (the scene fixture), so the chat never exists before: 201, never 200.
    "open_direct_chat": {**NO_SESSION, "non_member": 403, "member": 201, "owner": 201},
    # Typing in the owner's chat, and who types there now: members only; saying so is a 204 with no body.
    "set_typing": {**HIDDEN_FROM_NON_MEMBERS, "member": 204, "owner": 204},
    "list_typing": HIDDEN_FROM_NON_MEMBERS,
    # Presence: anyone logged in asks about anyone (the owner here) and sets their own; who sees what is in
    # tests/test_presence.py.
    "get_presence": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
    "set_presence": {**NO_SESSION, "non_member": 200, "member": 200, "owner": 200},
}

# get_user answers everyone logged in, but shows the email only to the user and to people who share a chat with them.
GET_USER_EMAIL_SHOWN = {"non_member": False, "member": True, "owner": True}

NEW_PASSWORD = "a brand new passphrase 42"
# A 2 by 2 PNG: an image, so that it has a thumbnail and may be an avatar.
PICTURE = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001649444154789c63fc"
    "cfc0c0c0c0c0c4c0c0c0c0c000000d1d01036ac29be90000000049454e44ae426082"
)
LONG_AGO = datetime.datetime(2000, 1, 1)
_fresh_names = itertools.count(1)


@dataclass
class Operation:
    method: str
    path: str
    spec: dict
    parameters: list[dict]


@dataclass
class Scene:
    """What every cell starts from: the owner's chat with a member in it and the owner's message."""

    app: object
    owner: Person
    member: Person
    stranger: Person
    chat_id: int
    message_id: int
    thread_reply_id: int
    invitation_id: int
    upload_id: int
    make_user: Callable[..., Person]


@dataclass
class Caller:
    client: httpx.Client
    password: str  # the password this caller would type as "current password": their own, or the one they claim


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = functools.reduce(operator.getitem, node["$ref"].removeprefix("#/").split("/"), SPEC_DOC)
    return node


def _spec_operations() -> list[tuple[str, Operation]]:
    return [
        (
            operation["operationId"],
            Operation(method.upper(), path, operation, [*item.get("parameters", []), *operation.get("parameters", [])]),
        )
        for path, item in SPEC_DOC["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


OPERATIONS = dict(_spec_operations())


# Required parameters, by name: the target of every operation is the owner's chat, message or account.
PARAMETERS = {
    "chat_id": lambda scene: scene.chat_id,
    "user_id": lambda scene: scene.owner.id,
    "id": lambda scene: scene.message_id,
    "message_id": lambda scene: scene.message_id,
    "invitation_id": lambda scene: scene.invitation_id,
    "upload_id": lambda scene: scene.upload_id,
    "filename": lambda scene: "picture.png",
    "q": lambda scene: "anything",
    "emoji": lambda scene: "\N{THUMBS UP SIGN}",
    "user_ids": lambda scene: str(scene.owner.id),
}

# Asked for JSON without waiting, the events come as one answer at once instead of a stream.
EXTRAS = {"get_events": {"headers": {"Accept": "application/json"}, "params": {"timeout": 0}}}


def _new_user(scene: Scene, caller: Caller) -> dict:
    name = f"newcomer{next(_fresh_names)}"
    return {"name": name, "password": NEW_PASSWORD, "email": f"{name}@example.com"}


# A valid form for each request body schema.
BODIES = {
    "Credentials": lambda scene, caller: {"name": scene.owner.name, "password": scene.owner.password},
    "NewUser": _new_user,
    "PasswordChange": lambda scene, caller: {"current_password": caller.password, "new_password": NEW_PASSWORD},
    "UserChanges": lambda scene, caller: {"email": "x@example.com"},
    "ChatTitle": lambda scene, caller: {"title": "t"},
    "NewMessage": lambda scene, caller: {"content": "hi"},
    "MessageText": lambda scene, caller: {"content": "hi again"},
    "NewMember": lambda scene, caller: {"name": scene.make_user().name},
    "ReadUpTo": lambda scene, caller: {"message_id": scene.message_id},
    "AvatarChoice": lambda scene, caller: {"upload_id": scene.upload_id},
    "ChatSettingsChange": lambda scene, caller: {"notify": "mentions"},
    "TypingChange": lambda scene, caller: {"op": "start"},
    "PresenceChange": lambda scene, caller: {"state": "idle", "status_text": "busy"},
}
# A valid body for an operation whose schema, shared with another, must name something else here: a thread's read
# marker moves to one of the thread's replies (the chat's, mark_read, to a message of the history).
OPERATION_BODIES = {"mark_thread_read": lambda scene, caller: {"message_id": scene.thread_reply_id}}
# A valid multipart body for each upload schema.
FILES = {"NewUpload": lambda scene, caller: {"file": ("notes.txt", b"some notes", "text/plain")}}


def build_request(operation_id: str, scene: Scene, caller: Caller) -> dict:
    """The operation's request, as httpx.Client.request takes it: required parameters and a valid body."""
    operation = OPERATIONS[operation_id]
    extras = EXTRAS.get(operation_id, {})
    path, params, headers = operation.path, dict(extras.get("params", {})), dict(extras.get("headers", {}))
    for parameter in map(_resolve, operation.parameters):
        if not parameter.get("required"):
            continue
        value = PARAMETERS[parameter["name"]](scene)
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query":
            params[parameter["name"]] = value
        else:
            headers[parameter["name"]] = str(value)
    body, files = None, None
    content = operation.spec.get("requestBody", {}).get("content", {})
    if "application/x-www-form-urlencoded" in content:
        schema = content["application/x-www-form-urlencoded"]["schema"]
        make_body = OPERATION_BODIES.get(operation_id, BODIES[schema["$ref"].rsplit("/", 1)[-1]])
        body = make_body(scene, caller)
    if "multipart/form-data" in content:
        files = FILES[content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]](scene, caller)
    request = {"method": operation.method, "url": BASE + path, "params": params, "headers": headers, "data": body}
    return {**request, "files": files} if files else request


def cookie_client(app, user_id: int, token: str) -> httpx.Client:
    return new_client(app, cookies={"user_id": str(user_id), "token": token})


def logged_in_again(scene: Scene) -> httpx.Client:
    """A second session of the owner's, in a client of its own."""
    fresh = new_client(scene.app)
    response = fresh.post("/api/login", data={"name": scene.owner.name, "password": scene.owner.password})
    assert response.status_code == 200, response.text
    return fresh


def anonymous(scene: Scene) -> Caller:
    return Caller(new_client(scene.app), scene.owner.password)


def forged(scene: Scene) -> Caller:
    return Caller(cookie_client(scene.app, scene.owner.id, secrets.token_urlsafe(32)), scene.owner.password)


def other_user_id(scene: Scene) -> Caller:
    """The stranger's live token, claiming to be the owner."""
    token = scene.stranger.client.cookies["token"]
    return Caller(cookie_client(scene.app, scene.owner.id, token), scene.owner.password)


def revoked(scene: Scene) -> Caller:
    session = logged_in_again(scene)
    token = session.cookies["token"]
    assert session.get("/api/logout").status_code == 200
    return Caller(cookie_client(scene.app, scene.owner.id, token), scene.owner.password)


def expired(scene: Scene) -> Caller:
    """A session long past both its lifetime and its idle timeout."""
    session = logged_in_again(scene)
    token_hash = models.Session.hash_token(session.cookies["token"])
    with models.db.connection_context(), models.db.atomic():
        changed = (
            models.Session.update(created_at=LONG_AGO, last_seen_at=LONG_AGO)
            .where(models.Session.token_hash == token_hash)
            .execute()
        )
    assert changed == 1
    return Caller(session, scene.owner.password)


ACTOR_SETUP: dict[str, Callable[[Scene], Caller]] = {
    "anonymous": anonymous,
    "forged": forged,
    "other_user_id": other_user_id,
    "revoked": revoked,
    "expired": expired,
    "non_member": lambda scene: Caller(scene.stranger.client, scene.stranger.password),
    "member": lambda scene: Caller(scene.member.client, scene.member.password),
    "owner": lambda scene: Caller(scene.owner.client, scene.owner.password),
}


def database_state() -> dict[str, list[tuple]]:
    """Every row of every table, but the idle clock a refused request may still move."""
    with models.db.connection_context():
        return {
            model.__name__: sorted(
                model.select(*[f for f in model._meta.sorted_fields if f is not models.Session.last_seen_at])
                .tuples()
                .iterator(),
                key=repr,
            )
            for model in models.MODELS
        }


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_app(request, tmp_path_factory):
    """One app and database per backend for the whole matrix: building an app takes far longer than a cell's requests.

    No cell touches another's state: each builds its own users, chat, message and sessions, and every request targets
    only those. Registration is not rate-limited here, as every cell registers three or more people.
    """
    url = fresh_postgres() if request.param == "postgresql" else f"sqlite:///{tmp_path_factory.mktemp('authz')}/chat.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CHAT_REGISTER_RATE", "off")
        env.setenv("CHAT_UPLOAD_RATE", "off")  # every cell uploads
        if request.param == "postgresql":
            own_uploads(env, tmp_path_factory.mktemp("authz"))  # not the checkout's uploads/, which workers share
        application = create_app(url, validate_responses=True, password_profile="cheapest")
    yield application
    models.db.close_all()


@pytest.fixture
def app(shared_app):
    """conftest's fixtures (make_user, client) use this app too."""
    return shared_app


@pytest.fixture
def scene(app, make_user, make_chat, send) -> Scene:
    owner = make_user(password="owner passphrase 42")
    member = make_user(password="member passphrase 42")
    stranger = make_user(password="stranger passphrase 42")
    chat_id = make_chat(owner, "plans", members=(member,))
    message_id = send(owner, chat_id, "hello")
    in_thread = owner.client.post(f"/api/chats/{chat_id}", data={"content": "and more", "thread_root_id": message_id})
    assert in_thread.status_code == 201, in_thread.text
    picture = owner.client.post("/api/uploads", files={"file": ("picture.png", PICTURE, "image/png")})
    assert picture.status_code == 201, picture.text
    upload_id = picture.json()["id"]
    shared = owner.client.post(f"/api/chats/{chat_id}", data={"attachments": str(upload_id)})
    assert shared.status_code == 201, shared.text
    strangers_chat = make_chat(stranger, "come along")
    invited = stranger.client.post(f"/api/chats/{strangers_chat}/members", data={"user_id": owner.id})
    assert invited.status_code == 202, invited.text
    return Scene(
        app,
        owner,
        member,
        stranger,
        chat_id,
        message_id,
        in_thread.json()["id"],
        invited.json()["id"],
        upload_id,
        make_user,
    )


def test_matrix_has_a_row_for_every_operation_in_the_spec():
    spec_ids = [operation_id for operation_id, _ in _spec_operations()]
    assert len(spec_ids) == len(set(spec_ids)), "an operationId is used twice"
    assert set(spec_ids) == set(MATRIX)
    assert all(set(row) == set(ACTORS) for row in MATRIX.values())


def test_matrix_refuses_every_secured_operation_without_a_live_session():
    for operation_id, operation in OPERATIONS.items():
        if operation.spec.get("security", SPEC_DOC["security"]):
            assert {actor: MATRIX[operation_id][actor] for actor in NO_SESSION} == NO_SESSION, operation_id


def test_matrix_answers_everyone_alike_on_unsecured_operations():
    for operation_id, operation in OPERATIONS.items():
        if not operation.spec.get("security", SPEC_DOC["security"]):
            assert len(set(MATRIX[operation_id].values())) == 1, operation_id


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_operation_as_actor_gets_its_status(scene, operation_id, actor):
    assert actor in MATRIX.get(operation_id, {}), f"MATRIX has no {operation_id} cell for {actor}"
    expected = MATRIX[operation_id][actor]
    caller = ACTOR_SETUP[actor](scene)
    request = build_request(operation_id, scene, caller)
    refused = expected in (401, 403, 404)
    before = database_state() if refused else None

    response = caller.client.request(**request)

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert set(response.json()) == {"error"}
    if refused:
        assert database_state() == before, "a refused request changed the database"
    if operation_id == "get_user" and expected == 200:
        shown = GET_USER_EMAIL_SHOWN[actor]
        assert response.json()["user"]["email"] == (f"{scene.owner.name}@example.com" if shown else None)


def test_remove_reaction_of_another_member_leaves_theirs_counted(scene):
    path = f"/api/chats/{scene.chat_id}/messages/{scene.message_id}/reactions/\N{THUMBS UP SIGN}"
    assert scene.member.client.put(path).status_code == 200

    removed = scene.owner.client.delete(path)

    assert removed.status_code == 200
    assert removed.json()["reactions"] == [{"emoji": "\N{THUMBS UP SIGN}", "count": 1, "me": False}]
    assert [user["id"] for user in scene.owner.client.get(path).json()["users"]] == [scene.member.id]
    message = scene.member.client.get(f"/api/chats/{scene.chat_id}/messages/{scene.message_id}").json()
    assert message["reactions"] == [{"emoji": "\N{THUMBS UP SIGN}", "count": 1, "me": True}]
    with models.db.connection_context():
        removals = models.Event.select().where(
            models.Event.kind == models.REACTION_REMOVED, models.Event.chat_id == scene.chat_id
        )
        assert removals.count() == 0


@pytest.mark.parametrize(
    "operation_id",
    [op for op, row in MATRIX.items() if row.get("non_member") == 404 and "{chat_id}" in OPERATIONS[op].path],
)
def test_operation_as_non_member_is_answered_as_for_a_chat_that_does_not_exist(scene, operation_id):
    """The 404 tells a non-member nothing: the same answer as for a chat id no chat has (but for the id)."""
    caller = ACTOR_SETUP["non_member"](scene)
    request = build_request(operation_id, scene, caller)
    missing_chat = scene.chat_id + 1_000_000
    elsewhere = {**request, "url": request["url"].replace(f"/chats/{scene.chat_id}", f"/chats/{missing_chat}")}
    assert elsewhere["url"] != request["url"]

    hidden, missing = caller.client.request(**request), caller.client.request(**elsewhere)

    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["error"] == missing.json()["error"].replace(str(missing_chat), str(scene.chat_id))
