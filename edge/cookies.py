"""The session's cookies: who the request is (its checked session), where it comes from, and the two HttpOnly
cookies that a login or a registration sets and a logout clears."""

from connexion.context import request
from starlette.responses import JSONResponse

from ..accounts import credentials
from ..models import Session
from .session_check import claim_of

COOKIES = ("user_id", "token")


def session_token(token_info: dict) -> str:
    """The token of the request's live session (checked before any handler runs)."""
    return claim_of(token_info).token


def session_id(token_info: dict) -> int:
    """The id of the request's session, which event streams and read markers use to tell devices apart."""
    return claim_of(token_info).session_id


def client_address() -> str:
    """The client's IP address; behind a proxy trusted with --forwarded-allow-ips, the one it forwarded."""
    return request.client.host if request.client else "unknown"


def _cookie_options() -> dict:
    return {"path": "/", "httponly": True, "samesite": "lax", "secure": request.url.scheme == "https"}


def start_session(user_id: int, status: int) -> JSONResponse:
    """The response to a login or a registration: a new session in two cookies."""
    token = Session.start(user_id)
    response = JSONResponse({"status": "ok", "id": user_id}, status_code=status, headers={"Location": "/api/chats"})
    # The cookies last as long as the session may: a browser drops them when it ends, however idle it was.
    max_age = credentials.sessions.lifetime
    response.set_cookie("user_id", str(user_id), max_age=max_age, **_cookie_options())
    response.set_cookie("token", token, max_age=max_age, **_cookie_options())
    return response


def logged_out() -> JSONResponse:
    """The response to a logout: both cookies cleared."""
    response = JSONResponse({"status": "ok"}, headers={"Location": "/api/login"})
    for name in COOKIES:
        response.delete_cookie(name, **_cookie_options())
    return response
