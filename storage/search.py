"""The search query language (GET /api/search): what a person types, read as words, prefixes and phrases, and
written out for SQLite's FTS5 or PostgreSQL's tsquery.

Only runs of letters, marks and digits ever reach the engine, each quoted, so nothing typed can be an operator, a column
filter or a syntax error there: `AND`, `-`, `:`, parentheses and stray quotes are text like any other (the YAML
describes the language).
"""

import re
import unicodedata
from dataclasses import dataclass

# Letters, marks (accents, vowel signs, viramas: inside a word in Hindi or Thai) and digits make words; everything
# else, underscore included, splits them, as both engines' tokenizers do.
_WORD_CATEGORIES = "LMN"
# A double-quoted phrase, then a word: a run of anything but spaces and double quotes.
_TOKEN = re.compile(r'"([^"]*)"(\*?)|([^\s"]+)')


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
