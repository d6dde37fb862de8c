"""Chats: list, create, rename, leave."""

import datetime

import pytest
from playhouse.test_utils import assert_query_count

from chat_server import models


def test_list_chats_empty(alice):
    response = alice.client.get("/api/chats")
    assert response.status_code == 200
    assert response.json() == {"chats": [], "next_cursor": None}


def test_create_chat_returns_id_and_location(alice):
    response = alice.client.post("/api/chats", data={"title": "general"})
    assert response.status_code == 201
    chat_id = response.json()["id"]
    assert response.json() == {"status": "ok", "id": chat_id}
    assert response.headers["location"] == f"/api/chats/{chat_id}"


def test_create_chat_title_limits(alice):
    assert alice.client.post("/api/chats", data={"title": "t" * 200}).status_code == 201
    assert alice.client.post("/api/chats", data={"title": "t" * 201}).status_code == 400
    assert alice.client.post("/api/chats", data={"title": ""}).status_code == 400
    assert alice.client.post("/api/chats", data={}).status_code == 400


@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069"])
def test_create_and_rename_chat_refuse_bidi_controls_in_the_title(alice, make_chat, control):
    response = alice.client.post("/api/chats", data={"title": f"{control}exe.txt"})
    assert response.status_code == 400
    assert "title" in response.json()["error"]
    chat_id = make_chat(alice, "plain")
    assert alice.client.put(f"/api/chats/{chat_id}", data={"title": f"a{control}b"}).status_code == 400


def test_send_message_keeps_bidi_controls_in_the_text(alice, make_chat):
    chat_id = make_chat(alice)
    text = "\u05e9\u05dc\u05d5\u05dd \u202eevil.exe\u202c \u2067isolated\u2069"
    assert alice.client.post(f"/api/chats/{chat_id}", data={"content": text}).status_code == 201
    assert alice.client.get(f"/api/chats/{chat_id}").json()["messages"][-1]["content"] == text


def test_create_chat_requires_login(client):
    assert client.post("/api/chats", data={"title": "x"}).status_code == 401


def test_list_chats_empty_chat_has_null_last_message(alice, make_chat):
    chat_id = make_chat(alice, "quiet")
    assert alice.client.get("/api/chats").json()["chats"] == [
        {
            "id": chat_id,
            "title": "quiet",
            "last_message": None,
            "last_message_time": None,
            "sender_id": None,
            "last_read_id": None,
            "unread_count": 0,
            "kind": "group",
            "mention_count": 0,
            "notify": "all",
            "muted_until": None,
        }
    ]


def test_list_chats_shows_last_message_newest_activity_first(alice, bob, make_chat, send):
    older = make_chat(alice, "older", members=(bob,))
    newer = make_chat(alice, "newer")
    send(alice, older, "first")
    send(bob, older, "second")
    send(alice, newer, "third")
    chats = alice.client.get("/api/chats").json()["chats"]
    assert [c["id"] for c in chats] == [newer, older]
    assert chats[1]["last_message"] == "second"
    assert chats[1]["sender_id"] == bob.id
    assert chats[1]["last_message_time"].endswith("Z")
    send(alice, older, "fourth")
    assert [c["id"] for c in alice.client.get("/api/chats").json()["chats"]] == [older, newer]


def test_list_chats_only_your_chats(alice, bob, make_chat):
    make_chat(alice, "alice only")
    assert bob.client.get("/api/chats").json()["chats"] == []


def test_list_chats_last_message_follows_deletion(alice, make_chat, send):
    chat_id = make_chat(alice)
    send(alice, chat_id, "kept")
    doomed = send(alice, chat_id, "deleted")
    assert alice.client.delete(f"/api/chats/{chat_id}", params={"id": doomed}).status_code == 200
    assert alice.client.get("/api/chats").json()["chats"][0]["last_message"] == "kept"


def test_list_chats_query_count_does_not_grow(alice, make_chat, send):
    for n in range(12):
        send(alice, make_chat(alice, f"chat {n}"), "hi")
    with assert_query_count(1):  # the listing, which checks the session itself
        assert len(alice.client.get("/api/chats").json()["chats"]) == 12
    cursor = alice.client.get("/api/chats", params={"limit": 5}).json()["next_cursor"]
    with assert_query_count(1):
        assert len(alice.client.get("/api/chats", params={"limit": 5, "before": cursor}).json()["chats"]) == 5


def test_an_empty_list_asks_for_the_session_alone(app, make_user):
    newcomer = make_user("newcomer")
    with assert_query_count(2):  # the listing found no row: was the session live? (session_check.SessionClaim.settle)
        assert newcomer.client.get("/api/chats").json() == {"chats": [], "next_cursor": None}
    assert newcomer.client.post("/api/logout").status_code == 200
    assert newcomer.client.get("/api/chats").status_code == 401


def make_chats(person, count: int, created_at: datetime.datetime | None = None) -> list[int]:
    """Chats made straight through the models, oldest first: much cheaper than a request each."""
    with models.db.connection_context():
        chats = [models.Chat.create_with_member(f"chat {n}", person.id) for n in range(count)]
        if created_at is not None:
            models.Chat.update(created_at=created_at).where(models.Chat.id.in_([c.id for c in chats])).execute()
    return [chat.id for chat in chats]


def list_page(person, **params) -> tuple[list[int], str | None]:
    response = person.client.get("/api/chats", params=params)
    assert response.status_code == 200, response.text
    return [chat["id"] for chat in response.json()["chats"]], response.json()["next_cursor"]


def page_through(person, limit: int, cursor: str | None = None) -> list[list[int]]:
    pages = []
    while True:
        ids, cursor = list_page(person, limit=limit, **({"before": cursor} if cursor else {}))
        pages.append(ids)
        if cursor is None:
            return pages


def test_list_chats_default_limit_is_100(alice):
    chat_ids = make_chats(alice, 101)
    ids, cursor = list_page(alice)
    assert ids == chat_ids[:0:-1]
    assert cursor is not None


def test_list_chats_without_parameters_is_the_whole_list_when_it_fits(alice, make_chat, send):
    quiet = make_chat(alice, "quiet")
    busy = make_chat(alice, "busy")
    send(alice, quiet, "hello")
    response = alice.client.get("/api/chats")
    assert response.status_code == 200
    assert [chat["id"] for chat in response.json()["chats"]] == [quiet, busy]
    assert response.json()["next_cursor"] is None


def test_list_chats_limit_respected(alice):
    chat_ids = make_chats(alice, 5)
    ids, cursor = list_page(alice, limit=2)
    assert ids == chat_ids[:-3:-1]
    assert cursor is not None


def test_list_chats_cursor_pages_through_every_chat_once_in_activity_order(alice, make_chat, send):
    chat_ids = [*make_chats(alice, 4), make_chat(alice, "new and empty")]
    send(alice, chat_ids[1], "wakes chat 1")
    send(alice, chat_ids[0], "wakes chat 0")
    pages = page_through(alice, limit=2)
    assert pages == [[chat_ids[0], chat_ids[1]], [chat_ids[4], chat_ids[3]], [chat_ids[2]]]


def test_list_chats_cursor_breaks_activity_ties_by_chat_id(alice):
    chat_ids = make_chats(alice, 5, created_at=datetime.datetime(2026, 1, 2, 3, 4, 5))
    assert page_through(alice, limit=2) == [chat_ids[:-3:-1], chat_ids[-3:-5:-1], [chat_ids[0]]]


def test_list_chats_paging_survives_new_messages_mid_paging(alice, send):
    chat_ids = make_chats(alice, 6)
    first, cursor = list_page(alice, limit=2)
    assert first == [chat_ids[5], chat_ids[4]]
    send(alice, chat_ids[1], "moves a chat of a later page to the front")
    send(alice, chat_ids[4], "moves a chat already seen to the front")
    later = page_through(alice, limit=2, cursor=cursor)
    assert later == [[chat_ids[3], chat_ids[2]], [chat_ids[0]]]
    assert list_page(alice, limit=3)[0] == [chat_ids[4], chat_ids[1], chat_ids[5]]


def test_list_chats_last_page_has_null_cursor(alice):
    chat_ids = make_chats(alice, 4)
    assert list_page(alice, limit=4) == (chat_ids[::-1], None)
    _, cursor = list_page(alice, limit=3)
    assert list_page(alice, limit=3, before=cursor) == ([chat_ids[0]], None)


@pytest.mark.parametrize(
    "cursor", ["", "abc", "1", "1-", "-1", "1-2-3", "1.2", " 1-2", "12345678901234567-1", "1-12345678901234567890"]
)
def test_list_chats_malformed_cursor_is_bad_request(alice, cursor):
    response = alice.client.get("/api/chats", params={"before": cursor})
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize("limit", [0, 1001, -1, "ten"])
def test_list_chats_limit_out_of_range_is_bad_request(alice, limit):
    response = alice.client.get("/api/chats", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize(
    "cursor, lists_all",
    [("0-1", False), ("0000000000000000-0", False), ("9999999999999999-9999999999999999999", True)],
)
def test_list_chats_cursor_no_page_handed_out_is_still_a_place_in_the_list(alice, cursor, lists_all):
    chat_ids = make_chats(alice, 3)
    assert list_page(alice, before=cursor) == (chat_ids[::-1] if lists_all else [], None)


def _unread(person, chat_id: int) -> tuple[int | None, int]:
    chat = next(chat for chat in person.client.get("/api/chats").json()["chats"] if chat["id"] == chat_id)
    return chat["last_read_id"], chat["unread_count"]


def test_list_chats_unread_count_counts_what_others_sent_after_the_marker(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    assert _unread(bob, chat_id) == (None, 0)
    send(alice, chat_id, "one")
    newest = send(alice, chat_id, "two")
    assert _unread(bob, chat_id) == (None, 2)
    assert _unread(alice, chat_id) == (newest, 0), "sending moves the sender's marker"
    assert bob.client.post(f"/api/chats/{chat_id}/read", data={"message_id": newest}).json() == {
        "status": "ok",
        "last_read_id": newest,
    }
    assert _unread(bob, chat_id) == (newest, 0)
    send(alice, chat_id, "three")
    assert _unread(bob, chat_id) == (newest, 1)


def test_list_chats_unread_count_stops_at_999(app, alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    with models.db.connection_context(), models.db.atomic():
        rows = [{"chat": chat_id, "sender_id": alice.id, "content": "flood", "time": models.utcnow()}] * 1_200
        models.Message.insert_many(rows).execute()
    assert _unread(bob, chat_id) == (None, 999)


def test_mark_read_never_moves_the_marker_back(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    older, newer = send(alice, chat_id, "older"), send(alice, chat_id, "newer")
    bob.client.post(f"/api/chats/{chat_id}/read", data={"message_id": newer})
    response = bob.client.post(f"/api/chats/{chat_id}/read", data={"message_id": older})
    assert response.status_code == 200 and response.json()["last_read_id"] == newer


def test_mark_read_message_of_another_chat_is_not_found(alice, bob, make_chat, send):
    chat_id, other = make_chat(alice, members=(bob,)), make_chat(alice)
    elsewhere = send(alice, other, "not in this chat")
    response = bob.client.post(f"/api/chats/{chat_id}/read", data={"message_id": elsewhere})
    assert response.status_code == 404 and "error" in response.json()


def test_mark_read_non_member_is_forbidden(alice, bob, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "private")
    response = bob.client.post(f"/api/chats/{chat_id}/read", data={"message_id": message_id})
    assert response.status_code == 403


def test_mark_read_missing_message_id_is_bad_request(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}/read", data={}).status_code == 400
