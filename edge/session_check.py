"""When the session is checked: in the request's own database hop, right before its handler, with no hop of its own.

Connexion calls the cookie checkers (handlers/auth.py) before it validates the request. They only check the
cookies' shape and return a `SessionClaim`; the database is asked later, by `claimed_user`, in the same hop,
greenlet and pooled connection as the handler (offload.py). On PostgreSQL that saves a request a greenlet, a
connection checkout and the waits around them: a tenth of a chat list's time (BENCHMARKS.md).

What a client sees stays as it was: a forged, expired or revoked session gets 401, whatever else is wrong with the
request. A request that fails validation never reaches its handler, so the error mapping asks `refused_session`
first (edge/responses.py), and a dead session turns the 400 into that 401.
"""

from dataclasses import dataclass, field

from ..accounts import credentials
from ..core.errors import Unauthorized
from ..models import LiveSession, Session, SessionLookup, db, queries_are_local
from ..storage import green

SESSION_ENDED = "the session cookies are not valid, or the session has ended"


@dataclass
class SessionClaim:
    """The cookies a request presents: a user id and the session tokens to try, in order. Once checked, the token
    that is a live session of that user, and the session's id."""

    user_id: int
    tokens: list[str]
    token: str | None = field(default=None)
    session_id: int | None = field(default=None)
    checked: bool = field(default=False)

    def check(self) -> bool:
        """Whether one of the tokens is a live session of the user; the database is asked once per request."""
        if not self.checked:
            sessions = credentials.sessions
            for token in self.tokens:
                session = Session.live(self.user_id, token, sessions.idle_timeout, sessions.max_age)
                if session is not None:
                    self.token, self.session_id = token, session
                    break
            self.checked = True
        return self.session_id is not None

    def lookup(self) -> SessionLookup:
        """For a query that checks the session itself (`@checks_session`): what finds the first token's session."""
        sessions = credentials.sessions
        return Session.lookup(self.token or self.tokens[0], sessions.idle_timeout, sessions.max_age)

    def settle(self, found: LiveSession | None) -> None:
        """After such a query: the session it found with its rows, or None when it returned no row, because the
        session is not live or because there was nothing to return; then the session is looked up alone. 401 when
        no token is a live session."""
        if found is not None and not self.checked:
            self.token, self.session_id, self.checked = self.tokens[0], found[0], True  # the one lookup() used
            Session.confirm(*found, credentials.sessions.idle_timeout)
        if not self.check():
            raise Unauthorized(SESSION_ENDED)


def claim_of(token_info: dict | None) -> SessionClaim | None:
    """The session claim in Connexion's token_info (one entry per scheme of the requirement that passed)."""
    if not token_info:
        return None
    for info in token_info.values():
        if isinstance(info, dict) and isinstance(info.get("claim"), SessionClaim):
            return info["claim"]
    return None


def claimed_user(token_info: dict) -> int:
    """The user of a live session, checked in the caller's database scope; 401 otherwise."""
    claim = claim_of(token_info)
    if claim is None or not claim.check():
        raise Unauthorized(SESSION_ENDED)
    return claim.user_id


def checks_session(handler):
    """Mark a read whose first query checks the session itself, a round trip fewer than asking first.

    It takes `claim` instead of `user`, passes `claim.lookup()` and `claim.user_id` to a query that joins the
    live session (models.Chat.listing_for, models.Message.page), and calls `claim.settle()` with what it found
    before it uses the rows or does anything else. Only reads: nothing may happen before the session is known.
    offload.py refuses to answer for one that did not settle.
    """
    handler.checks_session = True
    return handler


def is_checking_session(handler) -> bool:
    return getattr(handler, "checks_session", False)


def run_checking_session(handler, token_info: dict, kwargs: dict):
    """Call a handler with the session checked: by itself if it is `@checks_session`, else first, here."""
    if not is_checking_session(handler):
        return handler(**{**kwargs, "user": claimed_user(token_info)})
    claim = claim_of(token_info)
    # With two token cookies, the live one is found first, so that the handler's query looks for that one.
    if claim is None or (len(claim.tokens) > 1 and not claim.check()):
        raise Unauthorized(SESSION_ENDED)
    result = handler(claim=claim, **kwargs)
    if not (claim.checked and claim.session_id is not None):
        raise RuntimeError(f"{handler.__name__} answered without checking the session")
    return result


async def check_on_the_loop(claim: SessionClaim) -> bool:
    """claim.check() from a coroutine: inline on SQLite (a local lookup), in a request greenlet on PostgreSQL."""

    def check() -> bool:
        with db.connection_context():
            return claim.check()

    if claim.checked:
        return claim.session_id is not None
    if queries_are_local():
        # The idle clock's occasional write must not wait for the write lock here, on the event loop: it is
        # skipped instead (models.Session._seen).
        with db.obj.never_waiting():
            return check()
    return await green.run(check)


async def refused_session(token_info: dict | None) -> bool:
    """Whether the request presented a session that is not live: its error is then a 401, whatever it was."""
    claim = claim_of(token_info)
    return claim is not None and not await check_on_the_loop(claim)
