"""Issue 24's conversation features through the API, on both databases: reactions, replies, threads, mentions and
alert settings, direct chats and pins, each checked against the contract (every response is) and on the event log."""

import urllib.parse

import pytest

THUMBS = "👍"
ROCKET = "🚀"


def events_of(person, after: int = 0) -> list[dict]:
    response = person.client.get("/api/events", params={"last_event_id": after}, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()["events"]


def head(person) -> int:
    return person.client.get("/api/events", headers={"Accept": "application/json"}).json()["last_event_id"]


def react(person, chat_id, message_id, emoji=THUMBS, method="PUT"):
    path = f"/api/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(emoji)}"
    return person.client.request(method, path)


def test_reactions_count_once_per_person_and_are_live(alice, bob, make_chat, send, make_user):
    chat_id = make_chat(alice, members=(bob,))
    message_id = send(alice, chat_id, "hello")
    since = head(bob)
    assert react(alice, chat_id, message_id).status_code == 200
    again = react(alice, chat_id, message_id)
    assert again.json()["reactions"] == [{"emoji": THUMBS, "count": 1, "me": True}]
    react(bob, chat_id, message_id)
    react(bob, chat_id, message_id, ROCKET)
    page = alice.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert page[0]["reactions"] == [
        {"emoji": THUMBS, "count": 2, "me": True},
        {"emoji": ROCKET, "count": 1, "me": False},
    ]
    kinds = [(e["type"], e["data"].get("emoji"), e["data"].get("user_id")) for e in events_of(bob, since)]
    assert kinds == [
        ("reaction.added", THUMBS, alice.id),
        ("reaction.added", THUMBS, bob.id),
        ("reaction.added", ROCKET, bob.id),
    ]
    who = alice.client.get(f"/api/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(THUMBS)}")
    assert [u["id"] for u in who.json()["users"]] == [alice.id, bob.id]
    paged = alice.client.get(
        f"/api/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(THUMBS)}", params={"limit": 1}
    ).json()
    assert [u["id"] for u in paged["users"]] == [alice.id] and paged["next_cursor"] is not None
    # Taking back only ever takes back your own.
    assert react(bob, chat_id, message_id, method="DELETE").json()["reactions"][0] == {
        "emoji": THUMBS,
        "count": 1,
        "me": False,
    }
    stranger = make_user()
    assert react(stranger, chat_id, message_id).status_code == 404
    assert react(alice, chat_id, message_id, "a").status_code == 400
    assert react(alice, chat_id, message_id, "\u2764").status_code == 400  # unqualified heart
    assert react(alice, chat_id, message_id, "👩‍💻").status_code == 200
    assert react(alice, chat_id, message_id, "👍🏽").status_code == 200


def test_at_most_twenty_emoji(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "vote")
    faces = [chr(0x1F600 + n) for n in range(21)]
    for face in faces[:20]:
        assert react(alice, chat_id, message_id, face).status_code == 200
    assert react(alice, chat_id, message_id, faces[20]).status_code == 409
    assert len(alice.client.get(f"/api/chats/{chat_id}/messages/{message_id}").json()["reactions"]) == 20


def test_replies_quote_the_original_as_it_is_now(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    original = send(alice, chat_id, "x" * 150)
    reply = bob.client.post(f"/api/chats/{chat_id}", data={"content": "yes", "reply_to": original})
    assert reply.status_code == 201, reply.text
    message = bob.client.get(f"/api/chats/{chat_id}/messages/{reply.json()['id']}").json()
    assert message["reply_to"] == {"id": original, "sender_id": alice.id, "snippet": "x" * 100, "deleted": False}
    alice.client.delete(f"/api/chats/{chat_id}", params={"id": original})
    page = bob.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert page[-1]["reply_to"] == {"id": original, "sender_id": alice.id, "snippet": None, "deleted": True}
    other_chat = make_chat(alice)
    elsewhere = send(alice, other_chat, "elsewhere")
    assert bob.client.post(f"/api/chats/{chat_id}", data={"content": "no", "reply_to": elsewhere}).status_code == 404


def test_threads_stay_out_of_history_and_are_followed(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    root = send(alice, chat_id, "topic")
    since = head(alice)
    first = bob.client.post(f"/api/chats/{chat_id}", data={"content": "in thread", "thread_root_id": root})
    assert first.status_code == 201, first.text
    history = alice.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert [m["id"] for m in history] == [root]
    assert history[0]["thread"]["reply_count"] == 1 and history[0]["thread"]["participant_ids"] == [bob.id]
    thread = alice.client.get(f"/api/chats/{chat_id}/messages/{root}/thread").json()
    assert thread["root"]["id"] == root and [m["id"] for m in thread["messages"]] == [first.json()["id"]]
    kinds = [e["type"] for e in events_of(alice, since)]
    assert kinds == ["message.created", "thread.updated"]
    created = events_of(alice, since)[0]["data"]["message"]
    assert created["thread_root_id"] == root
    # A reply's root may not itself be a reply.
    nested = bob.client.post(f"/api/chats/{chat_id}", data={"content": "x", "thread_root_id": first.json()["id"]})
    assert nested.status_code == 409
    # Alice started it, Bob posted in it: both follow; Alice has one unread reply.
    listed = alice.client.get("/api/threads").json()["threads"]
    assert [(t["root"]["id"], t["unread_count"]) for t in listed] == [(root, 1)]
    read = alice.client.post(
        f"/api/chats/{chat_id}/messages/{root}/thread/read", data={"message_id": first.json()["id"]}
    )
    assert read.json()["last_read_id"] == first.json()["id"]
    assert alice.client.get("/api/threads").json()["threads"][0]["unread_count"] == 0
    assert alice.client.delete(f"/api/chats/{chat_id}/messages/{root}/thread/follow").status_code == 200
    assert alice.client.get("/api/threads").json()["threads"] == []
    assert alice.client.put(f"/api/chats/{chat_id}/messages/{root}/thread/follow").status_code == 200
    assert len(alice.client.get("/api/threads").json()["threads"]) == 1
    # The chat list and unread count ignore thread replies.
    chat = next(c for c in alice.client.get("/api/chats").json()["chats"] if c["id"] == chat_id)
    assert chat["last_message"] == "topic"


def test_mentions_resolve_count_and_alert(alice, bob, make_chat, send, make_user):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(bob, carol))
    since = head(bob)
    sent = alice.client.post(f"/api/chats/{chat_id}", data={"content": "hi @Bob and @nobody"})
    message = alice.client.get(f"/api/chats/{chat_id}/messages/{sent.json()['id']}").json()
    assert message["mentions"] == [bob.id] and message["mentions_all"] is False
    alice.client.post(f"/api/chats/{chat_id}", data={"content": "@all standup"})
    chats = {c["id"]: c for c in bob.client.get("/api/chats").json()["chats"]}
    assert chats[chat_id]["mention_count"] == 2 and chats[chat_id]["unread_count"] == 2
    carol_chat = next(c for c in carol.client.get("/api/chats").json()["chats"] if c["id"] == chat_id)
    assert carol_chat["mention_count"] == 1
    assert [e["type"] for e in events_of(bob, since) if e["type"] == "mention"] == ["mention", "mention"]
    # Muting stops the alert, not the count.
    settings = carol.client.put(f"/api/chats/{chat_id}/settings", data={"notify": "none"})
    assert settings.json() == {"notify": "none", "muted_until": None}
    since_carol = head(carol)
    alice.client.post(f"/api/chats/{chat_id}", data={"content": "@carol?"})
    assert [e for e in events_of(carol, since_carol) if e["type"] == "mention"] == []
    assert next(c for c in carol.client.get("/api/chats").json()["chats"] if c["id"] == chat_id)["mention_count"] == 2
    muted = bob.client.put(f"/api/chats/{chat_id}/settings", data={"muted_until": "2999-02-30T10:00:00+01:00"})
    assert muted.json()["muted_until"] == "2999-03-02T09:00:00Z"
    # Edits re-resolve.
    edited = alice.client.put(f"/api/chats/{chat_id}/messages/{sent.json()['id']}", data={"content": "hi @carol"})
    assert edited.json()["mentions"] == [carol.id]


def test_direct_chats_are_one_per_pair(alice, bob, make_chat, send, make_user):
    make_chat(alice, members=(bob,))  # contacts: Bob may open one with Alice
    opened = bob.client.post(f"/api/direct/{alice.id}")
    assert opened.status_code == 201 and opened.headers["Location"] == f"/api/chats/{opened.json()['id']}"
    again = alice.client.post(f"/api/direct/{bob.id}")
    assert again.status_code == 200 and again.json()["id"] == opened.json()["id"]
    chat_id = opened.json()["id"]
    listed = {c["id"]: c for c in alice.client.get("/api/chats").json()["chats"]}
    assert listed[chat_id]["kind"] == "direct" and listed[chat_id]["title"] == "bob"
    assert {c["id"]: c for c in bob.client.get("/api/chats").json()["chats"]}[chat_id]["title"] == "alice"
    carol = make_user("carol")
    assert alice.client.post(f"/api/chats/{chat_id}/members", data={"user_id": carol.id}).status_code == 409
    assert alice.client.put(f"/api/chats/{chat_id}", data={"title": "x"}).status_code == 409
    assert carol.client.post(f"/api/direct/{alice.id}").status_code == 403  # a stranger, by default
    notes = alice.client.post(f"/api/direct/{alice.id}")
    assert notes.status_code == 201
    # Leaving hides it until the next message.
    send(alice, chat_id, "hi")
    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert chat_id not in {c["id"] for c in bob.client.get("/api/chats").json()["chats"]}
    send(alice, chat_id, "still there?")
    assert chat_id in {c["id"] for c in bob.client.get("/api/chats").json()["chats"]}
    assert len(bob.client.get(f"/api/chats/{chat_id}").json()["messages"]) == 2


def test_pins(alice, bob, make_chat, send):
    chat_id = make_chat(alice, members=(bob,))
    first, second = send(alice, chat_id, "one"), send(alice, chat_id, "two")
    since = head(alice)
    assert bob.client.put(f"/api/chats/{chat_id}/pins/{first}").status_code == 200
    assert bob.client.put(f"/api/chats/{chat_id}/pins/{first}").status_code == 200
    assert alice.client.put(f"/api/chats/{chat_id}/pins/{second}").status_code == 200
    pins = alice.client.get(f"/api/chats/{chat_id}/pins").json()["pins"]
    assert [p["message"]["id"] for p in pins] == [second, first] and pins[1]["pinned_by"] == bob.id
    assert alice.client.delete(f"/api/chats/{chat_id}/pins/{first}").status_code == 200
    assert [e["type"] for e in events_of(alice, since)] == ["message.pinned", "message.pinned", "message.unpinned"]


@pytest.mark.parametrize("feature", ["pins", "settings"])
def test_non_members_get_404(alice, make_chat, make_user, feature):
    chat_id = make_chat(alice)
    stranger = make_user()
    assert stranger.client.get(f"/api/chats/{chat_id}/{feature}").status_code == 404
