"""Editing a message, and reading one: PUT and GET /api/chats/{chat_id}/messages/{message_id}."""

import datetime

from chat_server import models
from tests.test_events import poll


def message_path(chat_id: int, message_id: int) -> str:
    return f"/api/chats/{chat_id}/messages/{message_id}"


def edit(person, chat_id: int, message_id: int, content: str):
    return person.client.put(message_path(chat_id, message_id), data={"content": content})


def versions(message_id: int) -> list[str]:
    with models.db.connection_context():
        query = models.MessageVersion.select(models.MessageVersion.content).where(
            models.MessageVersion.message == message_id
        )
        return [content for (content,) in query.order_by(models.MessageVersion.id).tuples()]


def test_an_edit_shows_in_history_the_chat_list_one_message_and_the_stream(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "see you at 8")
    (sent,) = bob.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert sent["edited_at"] is None
    start = poll(bob)["last_event_id"]

    response = edit(alice, chat_id, message_id, "see you at 9")

    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["content"] == "see you at 9" and edited["id"] == message_id and edited["time"] == sent["time"]
    edited_at = datetime.datetime.fromisoformat(edited["edited_at"].removesuffix("Z"))
    assert edited_at >= datetime.datetime.fromisoformat(sent["time"].removesuffix("Z"))
    assert bob.client.get(f"/api/chats/{chat_id}").json()["messages"] == [edited]
    assert bob.client.get(message_path(chat_id, message_id)).json() == edited
    (chat,) = bob.client.get("/api/chats").json()["chats"]
    assert chat["last_message"] == "see you at 9"
    (event,) = poll(bob, start)["events"]
    assert event["type"] == "message.edited"
    assert event["data"] == {"chat_id": chat_id, "message": edited}


def test_an_edit_keeps_the_texts_the_message_had(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "one")
    for text in ("two", "three"):
        assert edit(alice, chat_id, message_id, text).status_code == 200
    assert versions(message_id) == ["one", "two"]


def test_an_edit_to_the_same_text_changes_nothing(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "same")
    start = poll(alice)["last_event_id"]
    response = edit(alice, chat_id, message_id, "same")
    assert response.status_code == 200
    assert response.json()["edited_at"] is None
    assert versions(message_id) == []
    assert poll(alice, start)["events"] == []


def test_an_older_message_edited_leaves_the_chat_list_on_the_newest(alice, make_chat, send):
    chat_id = make_chat(alice)
    first = send(alice, chat_id, "first")
    send(alice, chat_id, "second")
    assert edit(alice, chat_id, first, "first, fixed").status_code == 200
    (chat,) = alice.client.get("/api/chats").json()["chats"]
    assert chat["last_message"] == "second"


def test_someone_elses_message_is_403_and_stays(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "mine")
    response = edit(bob, chat_id, message_id, "theirs now")
    assert response.status_code == 403
    assert response.json() == {"error": "you can only edit your own messages"}
    assert bob.client.get(message_path(chat_id, message_id)).json()["content"] == "mine"


def test_a_non_member_gets_403_and_an_unknown_chat_404(alice, bob, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "private")
    assert edit(bob, chat_id, message_id, "x").status_code == 403
    assert bob.client.get(message_path(chat_id, message_id)).status_code == 403
    assert edit(alice, chat_id + 1000, message_id, "x").status_code == 404


def test_an_unknown_message_or_one_of_another_chat_is_404(alice, make_chat, send):
    chat_id = make_chat(alice)
    other_chat = make_chat(alice, "other")
    elsewhere = send(alice, other_chat, "elsewhere")
    for message_id in (elsewhere, elsewhere + 1000):
        assert edit(alice, chat_id, message_id, "x").status_code == 404
        response = alice.client.get(message_path(chat_id, message_id))
        assert response.status_code == 404
        assert response.json() == {"error": f"message {message_id} does not exist in chat {chat_id}"}


def test_an_edit_has_the_limits_of_a_send(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "short")
    assert edit(alice, chat_id, message_id, "x" * 10_000).status_code == 200
    for content in ("", "x" * 10_001, "nul \x00 inside"):
        response = edit(alice, chat_id, message_id, content)
        assert response.status_code == 400, content
        assert "error" in response.json()
    assert alice.client.get(message_path(chat_id, message_id)).json()["content"] == "x" * 10_000


def test_deleting_an_edited_message_deletes_its_versions(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "before")
    assert edit(alice, chat_id, message_id, "after").status_code == 200
    assert versions(message_id) == ["before"]
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": message_id}).status_code == 200
    assert versions(message_id) == []
    assert alice.client.get(message_path(chat_id, message_id)).status_code == 404


def test_a_sender_who_left_the_chat_can_no_longer_edit(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(bob, chat_id, "before I go")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert edit(bob, chat_id, message_id, "changed after leaving").status_code == 403
    assert alice.client.get(message_path(chat_id, message_id)).json()["content"] == "before I go"
