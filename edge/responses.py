"""The one error mapping: every error the app can raise (core/errors.py, the framework's, the database's) becomes
{"error": "<what was wrong>"} as JSON."""

import json
import logging
import re
from http import HTTPStatus

import connexion
import peewee
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from ..core.errors import ApiError
from .routes import Routes
from .session_check import SESSION_ENDED, refused_session

MAX_ERROR_CHARS = 300
# A property whose schema is `not: {}` may not be present; a `not` of such properties says "at least one of them"
# (NewMessage: content, attachments or both), and jsonschema's message then names them this way.
ABSENT = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)': \{'not': \{\}\}")
QUOTED_INPUT = re.compile(r"""^(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?= )""", re.DOTALL)

log = logging.getLogger("chat")


def error_response(status: int, message: str, headers: dict | None = None) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        body=json.dumps({"error": message}),
        content_type="application/json",
        headers=headers or {},
    )


def client_message(text: str) -> str:
    """A validation message fit to send back: jsonschema's first line, without the rejected input.

    jsonschema starts with the value it rejected (a mistyped password, a 200 KB title) and ends with
    a dump of the schema; the client gets neither, but keeps the field name and the rule broken.
    """
    first = (text or "").split("\n\n", 1)[0].strip()
    if " should not be valid under " in first and (absent := ABSENT.findall(first)):
        return "the form needs at least one of: " + ", ".join(absent)  # `not` of "all of these absent"
    first = QUOTED_INPUT.sub("the value", first)
    if len(first) <= MAX_ERROR_CHARS:
        return first
    return first[:80] + " ... " + first[-(MAX_ERROR_CHARS - 85) :]


async def session_first(request: ConnexionRequest, status: int) -> ConnexionResponse | None:
    """A 401 instead of another client error when the request's session, not yet checked, turns out not to be live.

    The session is checked right before the handler (session_check.py); a request refused before that, by
    validation say, is checked here, so a forged or ended session gets 401 whatever else was wrong with it.
    """
    if status != 401 and 400 <= status < 500 and await refused_session(request.context.get("token_info")):
        return error_response(401, SESSION_ENDED)
    return None


async def on_api_error(request: ConnexionRequest, exc: ApiError) -> ConnexionResponse:
    return await session_first(request, exc.status) or error_response(exc.status, exc.message, exc.headers)


async def on_problem(request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("%s %s failed: %s %s", request.method, request.url.path, exc.title, exc.detail)
        return error_response(500, "internal server error")
    return await session_first(request, exc.status) or error_response(
        exc.status, client_message(exc.detail or exc.title or "bad request")
    )


async def on_bad_form(request: ConnexionRequest, exc: MultiPartException) -> ConnexionResponse:
    return error_response(400, f"the form body could not be read: {exc.message}")


async def on_client_gone(request: ConnexionRequest, exc: ClientDisconnect) -> ConnexionResponse:
    log.info("%s %s: the client disconnected before sending its whole body", request.method, request.url.path)
    return error_response(400, "the request body ended early")


async def on_conflict(request: ConnexionRequest, exc: peewee.IntegrityError) -> ConnexionResponse:
    log.info("%s %s conflicted: %s", request.method, request.url.path, exc)
    return error_response(409, "the change conflicts with a concurrent change; reload and retry")


async def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, "internal server error")


def route_errors(routes: Routes):
    """404 and 405 for what the spec does not serve, with an Allow header that lists every method of the path."""

    async def on_http_error(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        if exc.status_code == 405:
            allowed = ", ".join(routes.allowed(request.url.path) or [])
            return error_response(405, f"{request.method} is not allowed here", {"Allow": allowed})
        if exc.status_code == 404:
            reason = "" if exc.detail == HTTPStatus.NOT_FOUND.phrase else f"; {exc.detail}"
            return error_response(404, f"no such resource: {request.url.path}{reason}")
        return error_response(exc.status_code, client_message(str(exc.detail)))

    return on_http_error


def map_errors(app: connexion.AsyncApp, routes: Routes) -> None:
    """Register the mapping. ProblemException is named explicitly, or Connexion's own problem+json handler wins."""
    app.add_error_handler(ApiError, on_api_error)
    app.add_error_handler(ProblemException, on_problem)
    app.add_error_handler(HTTPException, route_errors(routes))
    app.add_error_handler(MultiPartException, on_bad_form)
    app.add_error_handler(ClientDisconnect, on_client_gone)
    app.add_error_handler(peewee.IntegrityError, on_conflict)
    app.add_error_handler(Exception, on_unexpected)
