"""Issue 24's events on the live stream (GET /api/events), against a real chat-server on SQLite and on PostgreSQL with
two workers: reactions, thread replies, mentions with each alert setting, pins and new direct chats reach the members'
streams and never a non-member's. Every event received is checked against its schema in openapi/chat.yaml.

Events reach a stream in id order, so what a stream got before a later marker is all it will ever get from before
it: each test ends on a marker (a plain message) rather than waiting for something not to arrive."""

import urllib.parse

import pytest

from tests.sse import Received, Stream, check_event
from tests.test_races_conversations import BACKENDS, THUMBS, Person, running

PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"


def until_message(stream: Stream, message_id: int) -> list[Received]:
    """The stream's events up to and including the message.created of this message, each checked against its schema."""
    events = []
    while True:
        event = stream.next()
        check_event(event.kind, event.data)
        events.append(event)
        if event.kind == "message.created" and event.data["message"]["id"] == message_id:
            return events


def kinds(events: list[Received]) -> list[str]:
    return [event.kind for event in events]


def assert_got_nothing_before(outsider: Person, stream: Stream) -> None:
    """The outsider's next event is one of their own making, made now: they got none of the others'."""
    marker = outsider.send(outsider.new_chat(), "only mine")
    first = stream.next()
    check_event(first.kind, first.data)
    if first.kind == "member.added":  # their new chat's
        assert first.data["user"]["id"] == outsider.id
        first = stream.next()
        check_event(first.kind, first.data)
    assert (first.kind, first.data["message"]["id"]) == ("message.created", marker)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    with running(request.param) as started:
        yield started


def reaction_path(chat_id: int, message_id: int) -> str:
    return f"/chats/{chat_id}/messages/{message_id}/reactions/{urllib.parse.quote(THUMBS)}"


def test_reaction_added_and_removed_reach_the_members_only(people, streams):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob)
    message_id = alice.send(chat_id, "react to me")
    to_alice, to_bob, to_carol = streams(alice, bob, carol)
    for method in ("PUT", "PUT", "DELETE", "DELETE"):  # each repeat changes nothing, and says nothing
        assert bob.client.request(method, reaction_path(chat_id, message_id)).status_code == 200
    marker = alice.send(chat_id, "marker")
    reaction = {"chat_id": chat_id, "message_id": message_id, "emoji": THUMBS, "user_id": bob.id}
    for stream in (to_alice, to_bob):
        events = until_message(stream, marker)
        assert [(e.kind, e.data) for e in events[:2]] == [("reaction.added", reaction), ("reaction.removed", reaction)]
        assert kinds(events[2:]) == ["message.created"]
    assert_got_nothing_before(carol, to_carol)


def test_thread_reply_sends_message_created_with_its_root_and_thread_updated_to_the_members_only(people, streams):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob)
    root = alice.send(chat_id, "topic")
    to_alice, to_bob, to_carol = streams(alice, bob, carol)
    reply = bob.send(chat_id, "in the thread", thread_root_id=root)
    assert bob.client.delete(f"/chats/{chat_id}", params={"id": reply}).status_code == 200
    marker = alice.send(chat_id, "marker")
    for stream in (to_alice, to_bob):
        created, updated, *gone, _ = until_message(stream, marker)
        assert created.kind == "message.created" and created.data["chat_id"] == chat_id
        assert (created.data["message"]["id"], created.data["message"]["thread_root_id"]) == (reply, root)
        assert updated.kind == "thread.updated"
        assert (updated.data["chat_id"], updated.data["message_id"]) == (chat_id, root)
        assert updated.data["thread"]["reply_count"] == 1 and updated.data["thread"]["participant_ids"] == [bob.id]
        assert {e.kind: e.data for e in gone} == {
            "message.deleted": {"chat_id": chat_id, "message_id": reply},
            "thread.updated": {"chat_id": chat_id, "message_id": root, "thread": None},
        }
    assert_got_nothing_before(carol, to_carol)


def test_mention_reaches_the_mentioned_member_only(people, streams):
    alice, bob, carol, dave = people(4)
    chat_id = alice.new_chat(bob, carol)
    to_alice, to_bob, to_carol, to_dave = streams(alice, bob, carol, dave)
    # Alice names herself too, and Dave, who is not in the chat: neither is alerted.
    mentioning = alice.send(chat_id, f"@{bob.name}, @{alice.name} and @{dave.name}: look")
    marker = alice.send(chat_id, "marker")
    bobs = until_message(to_bob, marker)
    assert kinds(bobs) == ["message.created", "mention", "message.created"]
    assert bobs[1].data == {"chat_id": chat_id, "message_id": mentioning}
    assert bobs[0].data["message"]["mentions"] == [bob.id, alice.id]
    for stream in (to_alice, to_carol):
        assert kinds(until_message(stream, marker)) == ["message.created", "message.created"]
    assert_got_nothing_before(dave, to_dave)


def test_mention_in_a_thread_reply_reaches_the_mentioned_member_only(people, streams):
    alice, bob, carol, dave = people(4)
    chat_id = alice.new_chat(bob, carol)
    root = alice.send(chat_id, "topic")
    to_alice, to_bob, to_carol, to_dave = streams(alice, bob, carol, dave)
    reply = bob.send(chat_id, f"@{carol.name} what do you think?", thread_root_id=root)
    marker = alice.send(chat_id, "marker")
    carols = until_message(to_carol, marker)
    assert sorted(kinds(carols[:-1])) == ["mention", "message.created", "thread.updated"]
    assert next(e.data for e in carols if e.kind == "mention") == {"chat_id": chat_id, "message_id": reply}
    for stream in (to_alice, to_bob):
        assert sorted(kinds(until_message(stream, marker)[:-1])) == ["message.created", "thread.updated"]
    assert_got_nothing_before(dave, to_dave)
    # Being mentioned in it, Carol follows the thread.
    assert [t["root"]["id"] for t in carol.client.get("/threads").json()["threads"]] == [root]


def test_mention_all_reaches_every_other_member_who_wants_alerts(people, streams):
    alice, bob, carol, dave = people(4)
    chat_id = alice.new_chat(bob, carol)
    assert carol.client.put(f"/chats/{chat_id}/settings", data={"notify": "none"}).status_code == 200
    to_alice, to_bob, to_carol, to_dave = streams(alice, bob, carol, dave)
    everyone = alice.send(chat_id, "@all standup")
    marker = alice.send(chat_id, "marker")
    bobs = until_message(to_bob, marker)
    assert kinds(bobs) == ["message.created", "mention", "message.created"]
    assert bobs[1].data == {"chat_id": chat_id, "message_id": everyone}
    for stream in (to_alice, to_carol):
        assert kinds(until_message(stream, marker)) == ["message.created", "message.created"]
    assert_got_nothing_before(dave, to_dave)


@pytest.mark.parametrize(
    "settings, alerted",
    [
        ({"notify": "all"}, True),
        ({"notify": "mentions"}, True),
        ({"notify": "none"}, False),
        ({"muted_until": FUTURE}, False),
        ({"muted_until": PAST}, True),
        ({"notify": "mentions", "muted_until": FUTURE}, False),
    ],
    ids=["notify-all", "notify-mentions", "notify-none", "muted", "mute-expired", "mentions-but-muted"],
)
def test_mention_follows_the_mentioned_members_chat_settings(people, streams, settings, alerted):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    assert bob.client.put(f"/chats/{chat_id}/settings", data=settings).status_code == 200
    (to_bob,) = streams(bob)
    mentioning = alice.send(chat_id, f"@{bob.name} ping")
    marker = alice.send(chat_id, "marker")
    events = until_message(to_bob, marker)
    expected = ["message.created", "mention", "message.created"] if alerted else ["message.created"] * 2
    assert kinds(events) == expected
    assert events[0].data["message"]["mentions"] == [bob.id], "the settings change the alert, not the mention"
    if alerted:
        assert events[1].data == {"chat_id": chat_id, "message_id": mentioning}


def test_mention_missed_while_away_is_replayed_on_resume(people):
    alice, bob = people(2)
    chat_id = alice.new_chat(bob)
    with bob.stream() as to_bob:
        last = to_bob.ready().id
    mentioning = alice.send(chat_id, f"@{bob.name} while you were out")
    with bob.stream(last_event_id=last) as to_bob:
        replayed = to_bob.replayed()
    assert [(e.kind, e.data.get("message_id")) for e in replayed] == [
        ("message.created", None),
        ("mention", mentioning),
    ]


def test_message_pinned_and_unpinned_reach_the_members_only(people, streams):
    alice, bob, carol = people(3)
    chat_id = alice.new_chat(bob)
    message_id = alice.send(chat_id, "pin me")
    to_alice, to_bob, to_carol = streams(alice, bob, carol)
    for method in ("PUT", "PUT", "DELETE", "DELETE"):  # each repeat changes nothing, and says nothing
        assert bob.client.request(method, f"/chats/{chat_id}/pins/{message_id}").status_code == 200
    marker = alice.send(chat_id, "marker")
    pin = {"chat_id": chat_id, "message_id": message_id, "user_id": bob.id}
    for stream in (to_alice, to_bob):
        events = until_message(stream, marker)
        assert [(e.kind, e.data) for e in events] == [
            ("message.pinned", pin),
            ("message.unpinned", pin),
            ("message.created", events[-1].data),
        ]
    assert_got_nothing_before(carol, to_carol)


def test_open_direct_chat_sends_member_added_to_both_only_when_created(people, streams):
    alice, bob, carol = people(3)
    to_alice, to_bob, to_carol = streams(alice, bob, carol)
    created = alice.client.post(f"/direct/{bob.id}")
    assert created.status_code == 201, created.text
    chat_id = created.json()["id"]
    assert bob.client.post(f"/direct/{alice.id}").status_code == 200  # the same chat: no new event
    notes = alice.client.post(f"/direct/{alice.id}")  # notes to self: hers alone
    assert notes.status_code == 201, notes.text
    marker = alice.send(chat_id, "hello")
    as_alice, as_bob = {"id": alice.id, "name": alice.name}, {"id": bob.id, "name": bob.name}
    assert [(e.kind, e.data) for e in until_message(to_alice, marker)[:-1]] == [
        ("member.added", {"chat_id": chat_id, "user": as_alice}),
        ("member.added", {"chat_id": chat_id, "user": as_bob}),
        ("member.added", {"chat_id": notes.json()["id"], "user": as_alice}),
    ]
    bobs = until_message(to_bob, marker)
    assert [(e.kind, e.data) for e in bobs[:-1]] == [("member.added", {"chat_id": chat_id, "user": as_bob})]
    assert_got_nothing_before(carol, to_carol)


def test_direct_chat_left_still_streams_its_new_messages(people, streams):
    alice, bob = people(2)
    chat_id = alice.client.post(f"/direct/{bob.id}").json()["id"]
    assert bob.client.delete("/chats", params={"chat_id": chat_id}).status_code == 200  # hidden, still a member
    (to_bob,) = streams(bob)
    back = alice.send(chat_id, "are you there?")
    assert [(e.kind, e.data["chat_id"]) for e in until_message(to_bob, back)] == [("message.created", chat_id)]
    assert chat_id in {chat["id"] for chat in bob.client.get("/chats").json()["chats"]}
