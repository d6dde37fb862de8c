"""The framework floor the benchmarks compare against: the same chat list with no database behind it.

`connexion_floor()` is one Connexion AsyncApp operation guarded by the chat API's own two-cookie security
schemes and cookie checks (all but the database lookup of the session), with a plain (sync) handler, which
Connexion runs in its threadpool.
`connexion_async_floor()` is the same with an `async def` handler, which runs on the event loop, as the chat
handlers do on SQLite. Both apps also serve the floor for writes, `POST /api/chats/{chat_id}`: a send's form
(`content`, validated by the chat API's own form validator) behind the same security, answered 201 by an
`async def` handler with no database.
`starlette_floor()` is bare Starlette serving the same JSON. All are uvicorn factories:

    uvicorn --factory load.floor:connexion_floor
"""

import copy

import connexion
import yaml
from connexion.utils import get_function_from_name
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat_server.app import SPEC as CHAT_SPEC
from chat_server.app import CookieApiKeyHandler
from chat_server.edge.validation import CACHED_VALIDATORS
from chat_server.handlers.auth import TOKEN_SHAPE, check_user_id_cookie

CHATS = {
    "chats": [
        {
            "id": n,
            "title": f"chat {n}",
            "last_message": "see you at eight",
            "last_message_time": "2026-11-27T05:25:30.123456Z",
            "sender_id": 1,
        }
        for n in range(1, 11)
    ]
}

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "floor", "version": "1"},
    "servers": [{"url": "/api"}],
    "components": {
        "securitySchemes": {
            "user_id": {
                "type": "apiKey",
                "in": "cookie",
                "name": "user_id",
                "x-apikeyInfoFunc": "chat_server.handlers.auth.check_user_id_cookie",
            },
            "token": {
                "type": "apiKey",
                "in": "cookie",
                "name": "token",
                "x-apikeyInfoFunc": "load.floor.check_token_cookie",
            },
        }
    },
    "security": [{"user_id": [], "token": []}],
    "paths": {
        "/chats": {
            "get": {
                "operationId": "load.floor.list_chats",
                "responses": {"200": {"description": "chats", "content": {"application/json": {"schema": {}}}}},
            }
        },
        "/chats/{chat_id}": {
            "post": {
                "operationId": "load.floor.send_message",
                "parameters": [
                    {"name": "chat_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/NewMessage"}}
                    },
                },
                "responses": {"201": {"description": "sent", "content": {"application/json": {"schema": {}}}}},
            }
        },
    },
}
# The send's form schema, exactly as the chat API declares it.
SPEC["components"]["schemas"] = {
    "NewMessage": yaml.safe_load(CHAT_SPEC.read_text())["components"]["schemas"]["NewMessage"]
}


class FloorApiKeyHandler(CookieApiKeyHandler):
    """The chat API's cookie handling, with checkers named by their full import path: this module is not in the
    chat_server package."""

    @classmethod
    def _get_function(cls, security_definition, security_definition_key, environ_key, default=None):
        return get_function_from_name(security_definition[security_definition_key])


async def check_token_cookie(value: str, request) -> dict | None:
    """The chat API's token check without its one indexed session lookup: the cookies' shape and pairing only."""
    user = check_user_id_cookie(request.cookies.get("user_id", ""))
    if user is None or not TOKEN_SHAPE.fullmatch(value):
        return None
    return {"sub": user["sub"], "token": value}


def list_chats() -> dict:
    return CHATS


async def list_chats_async() -> dict:
    return CHATS


async def send_message(chat_id: int, body: dict):
    return {"status": "ok", "id": 1}, 201


def _floor(operation_id: str) -> connexion.AsyncApp:
    app = connexion.AsyncApp(__name__, security_map={"apiKey": FloorApiKeyHandler})
    spec = copy.deepcopy(SPEC)
    spec["paths"]["/chats"]["get"]["operationId"] = operation_id
    app.add_api(spec, strict_validation=True, validator_map=CACHED_VALIDATORS)
    return app


def connexion_floor() -> connexion.AsyncApp:
    return _floor("load.floor.list_chats")


def connexion_async_floor() -> connexion.AsyncApp:
    return _floor("load.floor.list_chats_async")


async def _starlette_chats(request):
    return JSONResponse(CHATS)


def starlette_floor() -> Starlette:
    return Starlette(routes=[Route("/api/chats", _starlette_chats)])
