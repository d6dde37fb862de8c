"""Integrity under concurrency: no chat outlives its last member, and a chat's message times follow their ids."""

import contextlib
import json
import threading

import pytest
from peewee import IntegrityError, fn

from chat_server import models
from chat_server.accounts import deletion

ROUNDS = 20


@pytest.fixture(autouse=True)
def registrations_unlimited(monkeypatch):
    """Account deletion rounds register a user each, more than one address may register in an hour."""
    monkeypatch.setenv("CHAT_REGISTER_RATE", "off")


def at_once(*calls):
    """Run the calls in threads released together; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def leave(person, chat_id: int):
    return lambda: person.client.delete("/api/chats", params={"chat_id": chat_id}).status_code


def delete_account(person):
    return lambda: person.client.delete(f"/api/user/{person.id}").status_code


def assert_no_orphans(chats: list[int]) -> None:
    """Nothing is left of the chats, and no chat anywhere is without members unless it is being purged."""
    with models.db.connection_context():
        assert models.Chat.select().where(models.Chat.id.in_(chats)).count() == 0
        assert models.Message.select().where(models.Message.chat.in_(chats)).count() == 0
        assert models.Membership.select().where(models.Membership.chat.in_(chats)).count() == 0
        assert models.DeletedChat.select().count() == 0
        members = models.Membership.select().where(models.Membership.chat == models.Chat.id)
        assert models.Chat.select().where(~fn.EXISTS(members)).count() == 0


def test_leave_chat_last_two_members_at_once_leaves_no_orphans(alice, bob, make_chat, send):
    chats = []
    for n in range(ROUNDS):
        chat_id = make_chat(alice, f"round {n}", members=(bob,))
        send(alice, chat_id, "hello")
        send(bob, chat_id, "bye")
        assert at_once(leave(alice, chat_id), leave(bob, chat_id)) == [200, 200]
        chats.append(chat_id)
    assert_no_orphans(chats)


def test_leave_chat_while_the_other_deletes_account_leaves_no_orphans(alice, make_user, make_chat, send):
    chats = []
    for n in range(ROUNDS):
        other = make_user()
        chat_id = make_chat(alice, f"round {n}", members=(other,))
        send(alice, chat_id, "hello")
        send(other, chat_id, "bye")
        assert at_once(leave(alice, chat_id), delete_account(other)) == [200, 200]
        chats.append(chat_id)
    assert_no_orphans(chats)


def test_create_chat_while_deleting_account_leaves_no_orphans(make_user):
    """A chat created as its only member's account goes either keeps them from going or is refused.

    Through the models: a request must pass the session check before the account's sessions end, a window
    too narrow to hit through the API.
    """
    for _ in range(ROUNDS):
        doomed = make_user()

        def create_chats(user_id=doomed.id):
            with models.db.connection_context():
                for _ in range(5):
                    with contextlib.suppress(IntegrityError):  # the account is gone: the foreign key refuses
                        models.Chat.create_with_member("doomed", user_id)

        def delete(user_id=doomed.id):
            with models.db.connection_context():
                deletion.delete_account(models.User.get_by_id(user_id))

        at_once(create_chats, delete)
    assert_no_orphans([])


def test_send_message_concurrent_times_follow_ids(alice, make_user, make_chat):
    """Each message's time is taken as it is stored, in id order, and its event carries the same time."""
    senders = [alice, *(make_user() for _ in range(3))]
    chat_id = make_chat(alice, members=tuple(senders[1:]))

    def send_many(person):
        def send():
            for n in range(15):
                response = person.client.post(f"/api/chats/{chat_id}", data={"content": f"{person.name} {n}"})
                assert response.status_code == 201, response.text

        return send

    at_once(*(send_many(person) for person in senders))
    messages = alice.client.get(f"/api/chats/{chat_id}", params={"limit": 100}).json()["messages"]
    assert len(messages) == 60
    with models.db.connection_context():
        stored = list(
            models.Message.select(models.Message.id, models.Message.time)
            .where(models.Message.chat == chat_id)
            .order_by(models.Message.id)
            .tuples()
        )
        events = models.Event.select(models.Event.data).where(
            models.Event.chat_id == chat_id, models.Event.kind == "message.created"
        )
        announced = {event["message"]["id"]: event["message"]["time"] for event in map(json.loads, events.scalars())}
    times = [time for _, time in stored]
    assert times == sorted(times)
    assert announced == {message["id"]: message["time"] for message in messages}
