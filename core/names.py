"""User names: the form a name is shown in, and the key that makes look-alike names one name.

A name is stored for display as typed, less its invisible characters (C0 and C1 controls and the format
characters in INVISIBLE, exactly the class the UserName pattern in openapi/chat.yaml names) and its leading
and trailing whitespace.

Uniqueness, login and look-up by name use the key instead, in the spirit of RFC 8265's PRECIS
UsernameCaseMapped profile plus the UTS #39 skeleton:

1. the display form, NFKC-normalized (full-width and other compatibility forms become plain ones) and
   case-folded;
2. without any format character (category Cf, on any plane) and with each run of whitespace made one space
   (none at the ends);
3. its UTS #39 skeleton: NFD, each character mapped through Unicode's confusables table (Cyrillic a to Latin
   `a`, `0` to `O`, `1` to `l`, `m` to `rn`), NFD again;
4. case-folded and NFKC-normalized once more, so capitals the skeleton maps to (`O`) land in lower case.

So `alice`, `Alice`, `a1ice`, a full-width ALICE and an alice with a Cyrillic a share one key. Case folding
comes first, so `aIice` (capital I) keeps its own key: matching it to `alice` would make every `i` match `l`.
A key may be longer than its name, as one character can become many under NFKC and the skeleton
(KEY_EXPANSION).
"""

import re
import unicodedata
from functools import cache
from pathlib import Path

from .errors import BadRequest

# Invisible characters, as the regex class body the UserName pattern uses. Written out rather than derived from
# unicodedata, so the code and the contract agree whatever Unicode version Python ships.
INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE = re.compile(f"[{INVISIBLE}]")

CONFUSABLES = Path(__file__).parent.parent / "data" / "confusables.txt"

MAX_LENGTH = 64  # characters of a name, the UserName schema's maxLength
# The longest key of any one character, in characters: U+FDFA, an Arabic phrase in one code point.
KEY_EXPANSION = 18
KEY_LENGTH = MAX_LENGTH * KEY_EXPANSION


def display_name(raw: str) -> str:
    """The name as stored and shown: without invisible characters and surrounding whitespace."""
    name = _INVISIBLE.sub("", raw).strip()
    if not name:
        raise BadRequest("a name needs at least one visible character")
    return name


def name_key(raw: str) -> str:
    """The key two names share when they look alike; unique among users."""
    folded = unicodedata.normalize("NFKC", display_name(raw)).casefold()
    visible = "".join(char for char in folded if unicodedata.category(char) != "Cf")
    key = unicodedata.normalize("NFKC", skeleton(" ".join(visible.split())).casefold())
    # Nothing but format characters beyond INVISIBLE (tag characters, say): the contract accepts such a name, so it
    # is compared as it is.
    return key or folded


def skeleton(text: str) -> str:
    """UTS #39 skeleton: what the text looks like, with each confusable character replaced by its prototype."""
    table = confusables()
    return unicodedata.normalize("NFD", "".join(table.get(char, char) for char in unicodedata.normalize("NFD", text)))


@cache
def confusables() -> dict[str, str]:
    """Unicode's confusables.txt as {character: prototype}, read once."""
    table = {}
    for line in CONFUSABLES.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 2:
            source, target = (field.split() for field in fields[:2])
            table[chr(int(source[0], 16))] = "".join(chr(int(point, 16)) for point in target)
    return table


def lookup_key(raw: str) -> str | None:
    """The name's key, or None for a name with nothing visible, which matches no user."""
    try:
        return name_key(raw)
    except BadRequest:
        return None
