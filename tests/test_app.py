"""The app as a whole: error shapes for routing, validation and crashes, body limits, Swagger UI."""

import pytest

from chat_server import models


def test_unknown_route_is_json_not_found(client):
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "no such resource: /api/nope"}


def test_wrong_method_lists_every_allowed_method(alice):
    response = alice.client.patch("/api/chats/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, POST, PUT"
    assert "error" in response.json()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_trailing_slash_is_not_found_not_a_redirect(alice, method):
    response = alice.client.request(method, "/api/chats/", data={"title": "t"} if method == "POST" else None)
    assert response.status_code == 404
    assert "trailing slash" in response.json()["error"]
    assert "location" not in response.headers


def test_head_is_not_allowed_and_does_not_run_the_get_handler(alice):
    response = alice.client.head("/api/logout")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert alice.client.get("/api/chats").status_code == 200


def test_head_of_the_spec_itself_is_served(app):
    assert app.test_client().head("/api/openapi.json").status_code == 200


def test_non_integer_path_id_is_not_found(alice):
    assert alice.client.get("/api/chats/abc").status_code == 404


def test_json_body_is_unsupported_media_type(alice):
    response = alice.client.post("/api/chats", json={"title": "x"})
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/login", "/api/user/0", "/api/chats"])
def test_form_without_content_type_is_unsupported_media_type(alice, path):
    response = alice.client.post(path, content=b"name=a&password=password1&email=a@b.co&title=t")
    assert response.status_code == 415
    assert "Content-Type" in response.json()["error"]


def test_put_without_a_body_needs_no_content_type(alice):
    assert alice.client.put(f"/api/user/{alice.id}").status_code == 200


def test_overlong_user_id_cookie_is_unauthorized(client):
    client.cookies.update({"user_id": "9" * 5000, "token": "t" * 43})
    response = client.get("/api/chats")
    assert response.status_code == 401


def test_validation_error_is_short_and_names_the_field(alice):
    response = alice.client.post("/api/chats", data={"title": "t" * 5000})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "title" in error
    assert len(error) <= 300
    assert "Failed validating" not in error


def test_two_megabyte_form_is_payload_too_large(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(f"/api/chats/{chat_id}", data={"content": "x" * 2_000_000})
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"] == []


def _chunked(*parts: bytes):
    yield from parts


def test_chunked_body_is_read(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(
        f"/api/chats/{chat_id}",
        content=_chunked(b"content=sent", b"%20in%20chunks"),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"][0]["content"] == "sent in chunks"


def test_chunked_body_over_the_cap_is_payload_too_large(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(
        f"/api/chats/{chat_id}",
        content=_chunked(b"content=", *[b"x" * 10_000] * 30),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"] == []


def test_unexpected_exception_is_generic_500(alice, monkeypatch, caplog):
    def explode(cls, *args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(models.Chat, "listing_for", classmethod(explode))
    response = alice.client.get("/api/chats")
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "secret internal detail" in caplog.text


def test_spec_and_swagger_ui_are_served(app):
    plain = app.test_client()
    assert plain.get("/api/openapi.json").json()["info"]["title"] == "Chat API"
    response = plain.get("/api/ui/")
    assert response.status_code == 200
    assert "swagger-ui" in response.text


@pytest.mark.parametrize("fields", [21, 1001])
def test_form_with_too_many_fields_is_bad_request(client, fields):
    body = "&".join(["x="] * (fields - 2)) + "&name=alice&password=12345678"
    response = client.post("/api/login", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "too many form fields: at most 20" in response.json()["error"]


def test_form_with_twenty_fields_is_parsed_and_its_undeclared_fields_refused(client):
    body = "&".join(f"x{n}=" for n in range(18)) + "&name=alice&password=12345678"
    response = client.post("/api/login", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("this operation takes no form field x0, x1, x10")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/login", "name=alice&password=12345678&role=admin"),
        ("/api/chats", "title=a&title=b"),
        ("/api/login", "name=alice&name=alice&password=12345678"),
    ],
)
def test_undeclared_or_repeated_form_field_is_bad_request(alice, path, body):
    response = alice.client.post(path, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "form field" in response.json()["error"]
    assert [chat["title"] for chat in alice.client.get("/api/chats").json()["chats"]] == []


def test_password_sent_to_update_user_is_refused_and_changes_nothing(alice):
    response = alice.client.put(f"/api/user/{alice.id}", data={"password": "another password"})
    assert response.status_code == 400
    assert response.json() == {"error": "this operation takes no form field password"}
    assert alice.client.post("/api/login", data={"name": alice.name, "password": alice.password}).status_code == 200


def test_rejected_password_is_neither_echoed_nor_logged(client, caplog):
    caplog.set_level("DEBUG")
    response = client.post("/api/login", data={"name": "alice", "password": "hunter2"})
    assert response.status_code == 400
    assert response.json() == {"error": "the value is too short - 'password'"}
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("body", [b"content=%ED%A0%80", b"content=%FF", b"content=ok&x%C3=1"])
def test_form_that_is_not_utf8_is_bad_request(alice, make_chat, body):
    chat_id = make_chat(alice)
    response = alice.client.post(
        f"/api/chats/{chat_id}", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "the form body is not valid UTF-8"}
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"] == []


def test_form_in_another_charset_is_unsupported(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(
        f"/api/chats/{chat_id}",
        content=b"content=%E9t%E9",
        headers={"content-type": "application/x-www-form-urlencoded; charset=latin-1"},
    )
    assert response.status_code == 415


def test_form_with_multibyte_utf8_is_stored_exactly(alice, make_chat):
    chat_id = make_chat(alice)
    response = alice.client.post(
        f"/api/chats/{chat_id}",
        content=b"content=%C3%A9t%C3%A9+%F0%9F%91%8B",
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert response.status_code == 201
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"][0]["content"] == "été 👋"


def test_each_parameter_is_validated_once_per_request(alice, make_chat, monkeypatch):
    """A path's own parameters (chat_id) are validated once, not once per Connexion layer that read the operation."""
    from chat_server.edge import validation

    seen = []
    validate = validation.CachedParameterValidator.validate_parameter

    def counting(self, parameter_type, value, param, param_name=None):
        seen.append((param["in"], param["name"]))
        return validate(self, parameter_type, value, param, param_name)

    monkeypatch.setattr(validation.CachedParameterValidator, "validate_parameter", counting)
    chat = make_chat(alice, "t")
    seen.clear()
    assert alice.client.get(f"/api/chats/{chat}", params={"limit": 5}).status_code == 200
    assert sorted(seen) == [("path", "chat_id"), ("query", "after"), ("query", "before"), ("query", "limit")]


def test_handlers_are_decorated_once_not_per_request(alice, monkeypatch):
    from connexion.decorators.main import BaseDecorator

    decorations = []
    decorate = BaseDecorator.decorate
    monkeypatch.setattr(BaseDecorator, "decorate", lambda self, f: decorations.append(f) or decorate(self, f))
    assert alice.client.get("/api/chats").status_code == 200  # decorated here, on the operation's first request
    decorations.clear()
    for _ in range(3):
        assert alice.client.get("/api/chats").status_code == 200
    assert decorations == []
