"""GET /api/search: the query language on both backends, paging, and what it never shows."""

import pytest

from chat_server.storage import search

CORPUS = (
    "Lunch at noon?",
    "Let's meet at the Café by the station",
    "The meeting moved to Tuesday",
    "e-mail me the notes",
    "NOT sure AND maybe OR never",
    "the station café is closed",
    "new year plans: skiing",
)


@pytest.fixture
def corpus(alice, bob, make_chat, send):
    """alice and bob share a chat holding CORPUS; bob also has a chat of his own with a secret in it."""
    chat_id = make_chat(alice, members=(bob,))
    ids = {text: send(alice if n % 2 else bob, chat_id, text) for n, text in enumerate(CORPUS)}
    secret_chat = make_chat(bob, "bob alone")
    secret = send(bob, secret_chat, "the secret station lunch plans")
    return chat_id, ids, secret_chat, secret


def found(person, q: str, **params) -> list[str]:
    response = person.client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [message["content"] for message in response.json()["messages"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lunch", ["Lunch at noon?"]),
        ("LUNCH", ["Lunch at noon?"]),
        ("station", ["the station café is closed", "Let's meet at the Café by the station"]),
        ("meet", ["Let's meet at the Café by the station"]),
        ("meet*", ["The meeting moved to Tuesday", "Let's meet at the Café by the station"]),
        ('"station café"', ["the station café is closed"]),
        ('"café station"', []),
        ("the station", ["the station café is closed", "Let's meet at the Café by the station"]),
        ("café closed", ["the station café is closed"]),
        ("e-mail", ["e-mail me the notes"]),
        ("AND", ["NOT sure AND maybe OR never"]),
        ("NOT sure", ["NOT sure AND maybe OR never"]),
        ("lunch OR meeting", []),
        ("-notes", ["e-mail me the notes"]),
        ("plans:", ["new year plans: skiing"]),
        ("year:plans", ["new year plans: skiing"]),
        ("NEAR(meet station)", []),
        ("meet station)", ["Let's meet at the Café by the station"]),
        ('say "lunch', []),
        ('"lunch', ["Lunch at noon?"]),
        ("lunch)", ["Lunch at noon?"]),
        ("*", []),
        ("-", []),
        ("'; DROP TABLE message; --", []),
        ("\\", []),
        ("&|!<->:*", []),
    ],
)
def test_the_query_language_finds_exactly_these(alice, corpus, query, expected):
    assert found(alice, query) == expected


def test_accents_are_ignored_where_the_backend_can(alice, corpus, database_url):
    with_accent = ["the station café is closed", "Let's meet at the Café by the station"]
    assert found(alice, "café") == with_accent
    # SQLite folds accents (FTS5's unicode61); PostgreSQL's simple configuration does not (the YAML says so).
    assert found(alice, "cafe") == (with_accent if database_url.startswith("sqlite") else [])


def test_words_of_any_script_and_accents_typed_apart_are_whole_words(alice, make_chat, send, database_url):
    chat_id = make_chat(alice)
    for text in ("नमस्ते दुनिया", "สวัสดี ครับ", "mon résumé est prêt", "இது தமிழ்"):
        send(alice, chat_id, text)
    assert found(alice, "दुनिया") == ["नमस्ते दुनिया"]
    assert found(alice, "தமிழ்") == ["இது தமிழ்"]
    assert found(alice, "re\u0301sume\u0301") == ["mon résumé est prêt"]  # the accents as code points of their own
    assert found(alice, "résumé prêt") == ["mon résumé est prêt"]
    if database_url.startswith("postgresql"):  # FTS5's unicode61 splits Thai at its vowel marks; PostgreSQL does not
        assert found(alice, "สวัสดี") == ["สวัสดี ครับ"]


def test_another_chats_messages_never_show(alice, bob, corpus):
    _, _, secret_chat, _ = corpus
    assert found(alice, "secret") == []
    assert "the secret station lunch plans" not in found(alice, "station")
    assert found(bob, "secret") == ["the secret station lunch plans"]
    assert alice.client.get("/api/search", params={"q": "secret", "chat_id": secret_chat}).status_code == 403
    assert alice.client.get("/api/search", params={"q": "secret", "chat_id": secret_chat + 1000}).status_code == 404


def test_a_chat_you_left_is_no_longer_searched(alice, bob, corpus):
    chat_id, _, _, _ = corpus
    assert alice.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200
    assert found(alice, "lunch") == []
    assert found(bob, "lunch") == ["the secret station lunch plans", "Lunch at noon?"]


def test_results_are_newest_first_with_their_chat_and_page_back(alice, bob, corpus):
    chat_id, ids, secret_chat, secret = corpus
    response = bob.client.get("/api/search", params={"q": "station"})
    messages = response.json()["messages"]
    assert [(m["id"], m["chat_id"]) for m in messages] == [
        (secret, secret_chat),
        (ids["the station café is closed"], chat_id),
        (ids["Let's meet at the Café by the station"], chat_id),
    ]
    assert set(messages[0]) == {"id", "chat_id", "content", "sender_id", "time", "edited_at"}
    first = bob.client.get("/api/search", params={"q": "station", "limit": 2}).json()["messages"]
    rest = bob.client.get("/api/search", params={"q": "station", "limit": 2, "before": first[-1]["id"]})
    assert [m["id"] for m in first + rest.json()["messages"]] == [m["id"] for m in messages]
    assert found(bob, "station", chat_id=chat_id) == [m["content"] for m in messages[1:]]


def test_edits_and_deletes_are_searched_as_they_are_now(alice, bob, corpus):
    chat_id, ids, _, _ = corpus
    message_id = ids["Lunch at noon?"]  # bob's
    edited = bob.client.put(f"/api/chats/{chat_id}/messages/{message_id}", data={"content": "Dinner at eight?"})
    assert edited.status_code == 200
    assert found(alice, "lunch") == []
    assert found(alice, "dinner") == ["Dinner at eight?"]
    assert bob.client.delete(f"/api/chats/{chat_id}", params={"id": message_id}).status_code == 200
    assert found(alice, "dinner") == []


@pytest.mark.parametrize("query", ["", " ", "\t\n", "x" * 257])
def test_an_empty_or_over_long_query_is_400(alice, query):
    response = alice.client.get("/api/search", params={"q": query})
    assert response.status_code == 400
    assert "error" in response.json()


def test_the_longest_query_is_answered(alice, corpus):
    assert found(alice, "lunch " + "x" * 250) == []
    assert found(alice, '"' * 256) == []


def test_limit_is_1_to_100(alice, corpus):
    assert alice.client.get("/api/search", params={"q": "the", "limit": 101}).status_code == 400
    assert alice.client.get("/api/search", params={"q": "the", "limit": 0}).status_code == 400
    assert len(found(alice, "the", limit=1)) == 1


def test_queries_become_quoted_words_only():
    terms = search.terms('meet* "two words" AND -x: "unclosed')
    assert search.fts5_query(terms) == '"meet"* "two words" "AND" "x" "unclosed"'
    assert search.tsquery(terms) == "'meet':* & 'two' <-> 'words' & 'AND' & 'x' & 'unclosed'"
    assert search.terms('- : ( ) * "" \'') == []
