"""The search query language (GET /api/search): what a person types, read as words, prefixes and phrases, and
written out for SQLite's FTS5 or PostgreSQL's tsquery.

Only runs of letters, marks and digits ever reach the engine, each quoted, so nothing typed can be an operator, a column
filter or a syntax error there: `AND`, `-`, `:`, parentheses and stray quotes are text like any other (the YAML
describes the language). A query is bounded (`bounded_terms`), and a search runs under a time budget (`budget`).
"""

import contextlib
import re
import time
import unicodedata
from dataclasses import dataclass

from peewee import OperationalError, PostgresqlDatabase, Table

from ..core.errors import BadRequest, Unavailable
from .engines import db

# Letters, marks (accents, vowel signs, viramas: inside a word in Hindi or Thai) and digits make words; everything
# else, underscore included, splits them, as both engines' tokenizers do.
_WORD_CATEGORIES = "LMN"
# A double-quoted phrase, then a word: a run of anything but spaces and double quotes.
_TOKEN = re.compile(r'"([^"]*)"(\*?)|([^\s"]+)')


# The bounds of a query (the YAML declares them): each word is a doclist the engine reads, each prefix the union of
# every word it begins.
MAX_WORDS = 8
MAX_PREFIXES = 2
MIN_PREFIX = 2
# Below this many messages in the searcher's chats, a search reads only those (models.Message.search).
CANDIDATE_LIMIT = 2000
# SQLite: the FTS5 table a search of few candidates fills with them and matches, on each connection of its own.
SQLITE_CANDIDATES = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_candidates USING fts5("
    "content, tokenize='unicode61 remove_diacritics 2')"
)
SQLITE_CLEAR_CANDIDATES = "DELETE FROM temp.search_candidates"
CANDIDATES = Table("search_candidates", ("rowid", "content"), schema="temp")
# SQLite calls the progress handler every this many virtual machine steps (about a millisecond's work).
_PROGRESS_STEPS = 10_000


@dataclass(frozen=True)
class Term:
    """Words that must appear next to each other, in order; one word alone, unless the text split it. With
    `prefix`, the last word matches every word it begins."""

    words: tuple[str, ...]
    prefix: bool = False


def terms(query: str) -> list[Term]:
    """The terms of a query, all of which a message must match; none when it holds no letter or digit.

    A quote without a partner is taken as a space, so `say "hi` is the words say and hi.
    """
    query = unicodedata.normalize("NFC", query)  # an accent typed as its own code point joins its letter
    if query.count('"') % 2:
        last = query.rindex('"')
        query = query[:last] + " " + query[last + 1 :]
    found = []
    for phrase, phrase_star, word in _TOKEN.findall(query):
        text, prefix = (phrase, phrase_star == "*") if not word else (word, word.endswith("*"))
        words = tuple(_words(text))
        if words:
            found.append(Term(words, prefix))
    return found


def bounded_terms(query: str) -> list[Term]:
    """The terms of a query within the bounds: at most MAX_WORDS words (a phrase counts each), MAX_PREFIXES
    prefixes, each of at least MIN_PREFIX characters; BadRequest otherwise."""
    found = terms(query)
    words = sum(len(term.words) for term in found)
    if words > MAX_WORDS:
        raise BadRequest(f"a search has at most {MAX_WORDS} words (each word of a phrase counts); this one has {words}")
    prefixes = [term.words[-1] for term in found if term.prefix]
    if len(prefixes) > MAX_PREFIXES:
        raise BadRequest(
            f"a search has at most {MAX_PREFIXES} prefixes (words ending in *); this one has {len(prefixes)}"
        )
    for prefix in prefixes:
        if len(prefix) < MIN_PREFIX:
            raise BadRequest(f"a prefix needs at least {MIN_PREFIX} letters or digits before its *: {prefix}*")
    return found


@contextlib.contextmanager
def budget(database, seconds: float):
    """Run a search's queries (on this thread's connection) for at most `seconds`, else Unavailable (503).

    SQLite interrupts the statement from its progress handler; PostgreSQL cancels it by statement_timeout, set
    for the transaction this opens.
    """
    ran_out = Unavailable("the search ran out of time; narrow it (a chat, longer words) or retry", retry_after=1)
    if isinstance(database, PostgresqlDatabase):
        try:
            with database.atomic():
                database.execute_sql(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")
                yield
        except OperationalError as exc:
            if "statement timeout" in str(exc):
                raise ran_out from exc
            raise
        return
    deadline = time.monotonic() + seconds
    connection = database.connection()
    connection.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        yield
    except OperationalError as exc:
        if "interrupted" in str(exc):
            raise ran_out from exc
        raise
    finally:
        connection.set_progress_handler(None, 0)


def _words(text: str):
    """The runs of letters, marks and digits in the text."""
    word = []
    for character in text:
        if unicodedata.category(character)[0] in _WORD_CATEGORIES:
            word.append(character)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)


def fts5_query(found: list[Term]) -> str:
    """For SQLite FTS5: each term a quoted string (a phrase of its words), `*` after one that is a prefix."""
    return " ".join('"' + " ".join(term.words) + '"' + ("*" if term.prefix else "") for term in found)


def tsquery(found: list[Term]) -> str:
    """For PostgreSQL's to_tsquery: quoted lexemes, `<->` between the words of a phrase, `:*` on a prefix."""
    parts = []
    for term in found:
        lexemes = [f"'{word}'" for word in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append(" <-> ".join(lexemes))
    return " & ".join(parts)


def run(
    plans: dict,
    candidates,
    reader_id: int,
    found: list[Term],
    chat_id: int | None,
    limit: int,
    below: int,
    budget_seconds: float,
) -> list[tuple]:
    """The rows of the newest `limit` messages below `below` that match every term, in the reader's chats (only
    `chat_id`'s, when given): (id, chat, content, sender, time, edited_at). Unavailable after `budget_seconds`.

    `plans` are models.py's statements of storage/queries.py's search plans. When the reader's chats hold fewer
    than CANDIDATE_LIMIT messages below `below`, only those are read and matched, so the cost follows the
    reader's chats, not the server's; otherwise the full-text index is searched first.
    """
    if not found:
        return []
    database = db.obj
    postgres = isinstance(database, PostgresqlDatabase)
    query = tsquery(found) if postgres else fts5_query(found)
    chat = () if chat_id is None else (chat_id,)
    filled = False
    try:
        with budget(database, budget_seconds):
            (mine,) = plans["count"].first(reader_id, below, *chat, CANDIDATE_LIMIT)
            if mine >= CANDIDATE_LIMIT:
                rows = plans["index"].rows(reader_id, query, below, *chat, limit)
            elif postgres:
                rows = plans["scan"].rows(reader_id, below, *chat, CANDIDATE_LIMIT, query, limit)
            else:
                database.execute_sql(SQLITE_CANDIDATES)
                database.execute_sql(SQLITE_CLEAR_CANDIDATES)  # in case a search was cut short
                filled = True
                plans["fill"].execute(reader_id, below, *chat)
                rows = candidates.rows(query, limit)
    finally:
        if filled:  # outside the budget, so that emptying the table is never cut short
            database.execute_sql(SQLITE_CLEAR_CANDIDATES)
    return rows
