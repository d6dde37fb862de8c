"""GET /api/search: the query language on both backends, paging, what it never shows, its bounds, and its lane."""

import asyncio
import concurrent.futures
import datetime
import threading
import time

import pytest
from peewee import chunked

from chat_server import models
from chat_server.core.errors import Unavailable
from chat_server.edge import search_lane
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
    assert set(messages[0]) == {
        "id", "chat_id", "content", "sender_id", "time", "edited_at", "attachments",
        "reply_to", "thread_root_id", "thread", "reactions", "mentions", "mentions_all",
    }  # fmt: skip
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


# The costliest query the bounds allow: 8 words, 2 of them the shortest prefixes, of the commonest letters.
WORST_QUERY = "th* re* the review comments see at lunch"
MANY_MESSAGES = 200_000
SEED_TEXTS = ("see the review comments", "lunch at noon?", "thanks, looks good", "the failing build", "on my way")


@pytest.mark.parametrize(
    ("query", "bound"),
    [
        ("one two three four five six seven eight nine", "at most 8 words"),
        ('"one two three four five" six seven eight nine', "at most 8 words"),
        ("ab* cd* ef*", "at most 2 prefixes"),
        ("a*", "at least 2 letters or digits"),
        ('"meet a"*', "at least 2 letters or digits"),
    ],
)
def test_search_messages_out_of_bounds_is_400(alice, query, bound):
    response = alice.client.get("/api/search", params={"q": query})
    assert response.status_code == 400
    assert bound in response.json()["error"]


def test_search_messages_at_the_bounds_is_answered(alice, corpus):
    assert found(alice, "one two three four five six seven eight") == []
    assert found(alice, "meet* st* the") == ["Let's meet at the Café by the station"]
    assert found(alice, WORST_QUERY) == []


def seed_messages(chat_id: int, sender_id: int, count: int) -> None:
    """Bulk-insert `count` messages into one chat, straight into the tables (and so the search index)."""
    moment = models.utcnow() - datetime.timedelta(days=1)
    rows = ((chat_id, sender_id, SEED_TEXTS[n % len(SEED_TEXTS)], moment) for n in range(count))
    fields = [models.Message.chat, models.Message.sender_id, models.Message.content, models.Message.time]
    with models.db.connection_context(), models.db.atomic():
        for batch in chunked(rows, 2000):
            models.Message.insert_many(batch, fields=fields).execute()
        if models.queries_are_local():
            models.db.execute_sql("ANALYZE")
    if not models.queries_are_local():
        with models.db.connection_context():
            models.db.execute_sql("ANALYZE")


@pytest.fixture
def crowded(alice, bob, make_chat, send):
    """200,000 messages in alice's big chat; bob owns one message in a chat of his own. Both searches match
    nothing but read every candidate the plan gives them."""
    big = make_chat(alice, "big")
    seed_messages(big, alice.id, MANY_MESSAGES)
    own = make_chat(bob, "mine")
    send(bob, own, "my one message")
    return big, own


def timed(person, **params) -> tuple[int, float]:
    began = time.perf_counter()
    response = person.client.get("/api/search", params=params)
    return response.status_code, time.perf_counter() - began


def test_search_messages_of_a_one_message_user_reads_only_their_chats(bob, crowded):
    # The first searches of the lane's threads open their connections and build their statements.
    runs = [timed(bob, q=WORST_QUERY) for _ in range(13)]
    assert {status for status, _ in runs} == {200}
    assert found(bob, "my* one message") == ["my one message"]
    assert found(bob, "re* see") == []
    seconds = sorted(seconds for _, seconds in runs[3:])
    print(
        f"\nworst query, one-message user, {MANY_MESSAGES:,} messages, through the test client: "
        f"median {seconds[len(seconds) // 2] * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms"
    )


def test_search_messages_runs_in_the_search_lane(alice, corpus, monkeypatch):
    threads = []
    real_search = models.Message.search

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(models.Message, "search", recording)
    assert found(alice, "lunch") == ["Lunch at noon?"]
    assert len(threads) == 1
    assert threads[0].startswith(search_lane.THREAD_NAME)


def hold_the_lane(lane: search_lane.SearchLane, release: threading.Event) -> threading.Thread:
    """Take every slot of the lane until `release` is set."""
    started = threading.Barrier(lane.concurrency + 1)

    def hold(_seconds_left):
        started.wait()
        release.wait(10)

    async def hold_all():
        await asyncio.gather(*(lane.run(hold) for _ in range(lane.concurrency)))

    holder = threading.Thread(target=asyncio.run, args=(hold_all(),))
    holder.start()
    started.wait(5)
    return holder


def test_search_messages_beyond_the_lane_is_503_with_retry_after(alice, corpus, monkeypatch):
    lane = search_lane.SearchLane(concurrency=1, budget_seconds=0.2)
    monkeypatch.setattr(search_lane, "_lane", lane)
    release = threading.Event()
    holder = hold_the_lane(lane, release)
    try:
        response = alice.client.get("/api/search", params={"q": "lunch"})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "searches" in response.json()["error"]
        assert alice.client.get("/api/chats").status_code == 200  # the rest of the server is not in the lane
    finally:
        release.set()
        holder.join()
    assert found(alice, "lunch") == ["Lunch at noon?"]


def test_search_messages_beyond_its_time_budget_is_503(app):
    slow = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000000) SELECT count(*) FROM r"
    with models.db.connection_context():
        with pytest.raises(Unavailable) as refused, search.budget(models.db.obj, 0.05):
            models.db.execute_sql(slow).fetchone()
        assert refused.value.headers == {"Retry-After": "1"}
        assert models.db.execute_sql("SELECT 1").fetchone() == (1,)  # the connection goes on serving


def test_search_messages_burst_leaves_other_users_answering(alice, bob, crowded, app):
    """48 worst-case searches at once from alice, a member of 200,000 messages, while bob logs in, sends and
    lists his chats."""
    _, own = crowded
    statuses, latencies = [], {"login": [], "send": [], "list": []}
    done = threading.Event()

    def search_once(_):
        client = alice.client  # one account; the test client runs each request on a loop of its own
        statuses.append(client.get("/api/search", params={"q": WORST_QUERY}).status_code)

    def bobs_requests():
        while not done.is_set():
            for name, request in (
                ("login", lambda: bob.client.post("/api/login", data={"name": bob.name, "password": bob.password})),
                ("send", lambda: bob.client.post(f"/api/chats/{own}", data={"content": "still here"})),
                ("list", lambda: bob.client.get("/api/chats")),
            ):
                began = time.perf_counter()
                response = request()
                latencies[name].append(time.perf_counter() - began)
                assert response.status_code in (200, 201), response.text

    other = concurrent.futures.ThreadPoolExecutor(1)
    bobs = other.submit(bobs_requests)
    with concurrent.futures.ThreadPoolExecutor(48) as burst:
        list(burst.map(search_once, range(48)))
    done.set()
    bobs.result()
    other.shutdown()
    assert len(statuses) == 48
    assert set(statuses) <= {200, 503}
    assert all(latencies.values())
    report = ", ".join(f"{name} max {max(values) * 1000:.0f} ms ({len(values)})" for name, values in latencies.items())
    print(f"\n48 concurrent worst-case searches ({statuses.count(200)} answered, {statuses.count(503)} 503): {report}")


@pytest.mark.parametrize("candidate_limit", [1, search.CANDIDATE_LIMIT], ids=["index-first", "messages-first"])
def test_search_messages_plans_find_the_same(alice, bob, corpus, monkeypatch, candidate_limit):
    """Readers of many messages search the full-text index first; readers of few, their own messages."""
    monkeypatch.setattr(search, "CANDIDATE_LIMIT", candidate_limit)
    _, ids, secret_chat, secret = corpus
    newest = [secret, ids["the station café is closed"], ids["Let's meet at the Café by the station"]]
    assert [m["id"] for m in bob.client.get("/api/search", params={"q": "st* the"}).json()["messages"]] == newest
    page = bob.client.get("/api/search", params={"q": "station", "before": secret, "limit": 1}).json()["messages"]
    assert [m["id"] for m in page] == newest[1:2]
    assert found(bob, "station", chat_id=secret_chat) == ["the secret station lunch plans"]
    assert found(alice, "secret") == []
    assert found(alice, '"station café" clo*') == ["the station café is closed"]
