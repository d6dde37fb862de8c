"""Login, logout, who you are, and the cookie checks the security schemes name in the spec."""

import re

from starlette.responses import JSONResponse

from ..accounts import credentials, passwords, ratelimit
from ..core.errors import BadRequest, Unauthorized
from ..edge.cookies import client_address, logged_out, session_id, session_token, start_session
from ..edge.offload import hashes, threaded, writes
from ..edge.session_check import SESSION_ENDED, SessionClaim
from ..models import MAX_ID, Session, User
from . import own_account

TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
TOKEN_COOKIES = ("token", "access_token")  # the spec's two names for the session token
MAX_ID_DIGITS = len(str(MAX_ID))


def check_user_id_cookie(value: str) -> dict | None:
    # The length check comes first: int() refuses strings of over 4,300 digits with a ValueError.
    if len(value) > MAX_ID_DIGITS or not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        return None
    return {"sub": int(value)}


def check_token_cookie(value: str, request) -> dict | None:
    """The session cookies' shape; the database says whether they are a live session later, in the handler's own
    hop, or before any other error the request gets (edge/session_check.py). Both token cookies are tried, in order."""
    user = check_user_id_cookie(request.cookies.get("user_id", ""))
    if user is None or not TOKEN_SHAPE.fullmatch(value):
        return None
    tokens = [value]
    for name in TOKEN_COOKIES:
        other = request.cookies.get(name)
        if other is not None and other not in tokens and TOKEN_SHAPE.fullmatch(other):
            tokens.append(other)
    return {"sub": user["sub"], "claim": SessionClaim(user["sub"], tokens)}


@hashes
@writes
def login(body: dict) -> JSONResponse:
    """Refused with 429 once a name (every spelling that logs in as its user) or an address has too many failed
    logins, before any password is hashed."""
    limits, name, address = ratelimit.rate_limits, body["name"], client_address()
    key = ratelimit.name_key(name)
    limits.check(limits.login_name, key)
    limits.check(limits.login_address, address)
    user = passwords.authenticate(name, body["password"])
    if user is None:
        limits.count(limits.login_name, key)
        limits.count(limits.login_address, address)
        raise BadRequest("wrong name or password")
    return start_session(user.id, 200)


@writes
def logout(user: int, token_info: dict) -> JSONResponse:
    Session.revoke(session_token(token_info))
    return logged_out()


def get_session(user: int) -> dict:
    """Who the cookies' live session belongs to: the page's only way to ask, since the cookies are HttpOnly."""
    you = User.get_or_none(User.id == user)
    if you is None:  # the account was deleted after the session check: its sessions went with it
        raise Unauthorized(SESSION_ENDED)
    return {"user": you.as_dict()}


@threaded
@writes
def end_session(user: int, token_info: dict, all: bool = False) -> JSONResponse:  # noqa: A002 (the spec's name)
    """Threaded: with all=true it deletes every session of the user, however many."""
    if all:
        Session.revoke_all(user)
    else:
        Session.revoke(session_token(token_info))
    return logged_out()


@hashes
@writes
def change_password(user: int, user_id: int, body: dict, token_info: dict) -> dict:
    """Rate-limited like a login: a wrong current password counts as a failed login for the name and the address,
    and once either is over its limit the change is refused (429) before any password is hashed."""
    account = own_account(user, user_id)
    limits, address, key = ratelimit.rate_limits, client_address(), ratelimit.name_key(account.name)
    limits.check(limits.login_name, key)
    limits.check(limits.login_address, address)
    if not passwords.verify(account, body["current_password"]):
        limits.count(limits.login_name, key)
        limits.count(limits.login_address, address)
        raise BadRequest("wrong password")
    credentials.check_new_password(body["new_password"], account.name)
    passwords.change(account, body["new_password"], keep_session=session_id(token_info))
    return {"status": "ok"}
