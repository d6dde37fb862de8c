"""Query counts of the hot reads once issue 24's features are in the data: a history page with reactions, replies,
thread summaries and mentions, and a chat list with mentions and direct chats, on both databases."""

import urllib.parse

from playhouse.test_utils import assert_query_count, count_queries

PAGE = 20
THUMBS = "👍"
ROCKET = "🚀"


def react(person, chat_id: int, message_id: int, emoji: str) -> None:
    path = f"/api/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(emoji)}"
    assert person.client.put(path).status_code == 200


def post(person, chat_id: int, content: str, **extra) -> int:
    response = person.client.post(f"/api/chats/{chat_id}", data={"content": content, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def plain_chat(alice, bob, make_chat, send) -> int:
    chat_id = make_chat(alice, "plain", members=(bob,))
    for n in range(PAGE + 5):
        send(alice if n % 2 else bob, chat_id, f"plain {n}")
    return chat_id


def conversation(alice, bob, make_chat, send, *, reactions: bool) -> int:
    """A chat whose newest PAGE history messages hold replies (one to a deleted message), thread roots with
    summaries (their replies stay out of the page), mentions and, with `reactions`, Alice's and Bob's reactions."""
    chat_id = make_chat(alice, "busy", members=(bob,))
    gone = send(bob, chat_id, "soon deleted")
    ids = [
        send(alice if n % 2 else bob, chat_id, f"message {n} @bob" if n in (3, 5) else f"message {n}") for n in range(8)
    ]
    ids.append(post(alice, chat_id, "@all look", reply_to=ids[1]))
    ids.append(post(bob, chat_id, "answering a deleted one", reply_to=gone))
    assert bob.client.delete(f"/api/chats/{chat_id}", params={"id": gone}).status_code == 200
    for root in (ids[2], ids[5]):
        for person in (bob, alice, bob):
            post(person, chat_id, "in the thread", thread_root_id=root)
    ids += [send(alice if n % 2 else bob, chat_id, f"later {n}") for n in range(PAGE + 2 - len(ids))]
    if reactions:
        for message_id in (ids[-1], ids[-4], ids[5]):
            react(alice, chat_id, message_id, THUMBS)
        react(bob, chat_id, ids[-4], ROCKET)
        react(bob, chat_id, ids[-7], THUMBS)  # only others' reactions on this one
    return chat_id


def page_of(person, chat_id: int) -> list[dict]:
    response = person.client.get(f"/api/chats/{chat_id}", params={"limit": PAGE})
    assert response.status_code == 200, response.text
    messages = response.json()["messages"]
    assert len(messages) == PAGE
    return messages


def test_list_messages_plain_page_is_one_query(alice, bob, make_chat, send):
    chat_id = plain_chat(alice, bob, make_chat, send)
    with assert_query_count(1):  # the page, which checks the session and the membership itself
        page_of(alice, chat_id)


def test_list_messages_replies_threads_and_mentions_add_no_query(alice, bob, make_chat, send):
    chat_id = conversation(alice, bob, make_chat, send, reactions=False)
    with assert_query_count(1):  # quotes, summaries and mentions are read with the page (a join and the row)
        messages = page_of(alice, chat_id)
    assert sum(m["reply_to"] is not None for m in messages) == 2
    assert [m["thread"]["reply_count"] for m in messages if m["thread"]] == [3, 3]
    assert any(m["mentions_all"] for m in messages) and any(m["mentions"] == [bob.id] for m in messages)


def test_list_messages_with_reactions_is_still_one_query(alice, bob, make_chat, send):
    plain = plain_chat(alice, bob, make_chat, send)
    busy = conversation(alice, bob, make_chat, send, reactions=True)
    with count_queries() as plain_count:
        page_of(alice, plain)
    with assert_query_count(1):  # the reader's own reactions ("me") come with the page, a lookup per reacted message
        messages = page_of(alice, busy)
    assert plain_count.count == 1
    reactions = [r for m in messages for r in m["reactions"]]
    assert {"emoji": THUMBS, "count": 1, "me": True} in reactions
    assert {"emoji": ROCKET, "count": 1, "me": False} in reactions
    assert {"emoji": THUMBS, "count": 1, "me": False} in reactions
    assert any(m["reply_to"] for m in messages) and any(m["thread"] for m in messages)


def test_list_messages_reactions_cost_the_same_for_another_reader(alice, bob, make_chat, send):
    chat_id = conversation(alice, bob, make_chat, send, reactions=True)
    with assert_query_count(1):
        messages = page_of(bob, chat_id)
    assert any(r["me"] for m in messages for r in m["reactions"])  # Bob's own two


def test_list_chats_is_one_query_with_mentions_and_direct_chats(alice, bob, make_chat, make_user, send):
    carol = make_user("carol")
    groups = [make_chat(alice, f"group {n}", members=(bob, carol)) for n in range(4)]
    send(bob, groups[0], "@alice look")
    send(bob, groups[1], "@all standup")
    send(carol, groups[1], "@alice and @bob")
    send(alice, groups[2], "@bob mine do not count for me")
    direct = bob.client.post(f"/api/direct/{alice.id}").json()["id"]
    send(bob, direct, "@alice just us")
    notes = alice.client.post(f"/api/direct/{alice.id}").json()["id"]
    send(alice, notes, "a note to self")
    left = carol.client.post(f"/api/direct/{alice.id}").json()["id"]
    send(carol, left, "hi")
    assert alice.client.delete("/api/chats", params={"chat_id": left}).status_code == 200  # hidden until news
    muted = alice.client.put(f"/api/chats/{groups[3]}/settings", data={"notify": "mentions"})
    assert muted.status_code == 200
    with assert_query_count(1):  # the listing, which checks the session itself
        response = alice.client.get("/api/chats")
    chats = {chat["id"]: chat for chat in response.json()["chats"]}
    assert set(chats) == {*groups, direct, notes}
    assert [chats[c]["mention_count"] for c in (*groups, direct)] == [1, 2, 0, 0, 1]
    assert chats[direct]["kind"] == "direct" and chats[direct]["title"] == "bob"
    assert chats[groups[3]]["notify"] == "mentions"


def test_list_chats_query_count_does_not_grow_with_mentions(alice, bob, make_chat, send):
    for n in range(12):
        chat_id = make_chat(alice, f"chat {n}", members=(bob,))
        send(bob, chat_id, f"@alice {n}")
        bob.client.post(f"/api/direct/{alice.id}")
    with assert_query_count(1):
        chats = alice.client.get("/api/chats").json()["chats"]
    assert len(chats) == 13 and sum(chat["mention_count"] for chat in chats) == 12


def test_list_threads_costs_the_same_for_one_thread_or_many(alice, bob, make_chat, send):
    """The session's check, the threads you follow with their unread counts, and their roots: three queries however
    many threads, never one per thread."""
    chat_id = make_chat(alice, members=(bob,))

    def followed_threads(count: int) -> tuple[int, list[dict]]:
        for n in range(count):
            root = send(alice, chat_id, f"topic {n}")
            post(bob, chat_id, f"@alice about topic {n}", thread_root_id=root)
        with count_queries() as counted:
            response = alice.client.get("/api/threads")
        assert response.status_code == 200, response.text
        return counted.count, response.json()["threads"]

    one, threads = followed_threads(1)
    many, threads = followed_threads(5)
    assert one == many == 3
    assert len(threads) == 6 and all(thread["unread_count"] == 1 for thread in threads)
