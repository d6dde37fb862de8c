"""Build the Connexion app from openapi/chat.yaml, map every error to {"error": ...}, and run it."""

import argparse
import functools
import logging
import os
from importlib.metadata import version
from pathlib import Path
from urllib.parse import unquote_to_bytes

import anyio
import connexion
import uvicorn
import yaml
from connexion.context import context
from connexion.context import scope as request_scope
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver
from connexion.security import ApiKeySecurityHandler
from connexion.utils import get_function_from_name, is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, FormDataValidator, ParameterValidator
from connexion.validators.parameter import draft4_format_checker
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from . import models
from .errors import map_errors
from .handlers import BadRequest, is_threaded
from .routes import ExactRoutes, Routes

__version__ = version("chat-server")
# The spec ships as package data beside this module (pyproject.toml). It is found from __file__ because
# chat_server is a namespace package, which importlib.resources cannot read in an editable install.
SPEC = Path(__file__).parent / "openapi" / "chat.yaml"
DEFAULT_DATABASE_URL = "sqlite:///chat.db"
MAX_BODY_BYTES = 256 * 1024


def resolve(name: str):
    """The function a name in the spec stands for (`handlers.auth.login`), inside this package wherever it is
    installed: the spec names handlers by their place in the repository, not by the package they install as."""
    return get_function_from_name(f"{__package__}.{name}")


class CookieApiKeyHandler(ApiKeySecurityHandler):
    """Connexion's apiKey security, adjusted in four ways.

    Cookies are read with Starlette's parser: SimpleCookie drops every cookie when any one is
    malformed. Whether a checker takes `request` or `required_scopes` is looked up once per
    checker, not with `inspect.signature` on every request. And a rejected cookie pair gets a
    message a client author can act on. And the checker the spec names is found with `resolve`.
    """

    @classmethod
    def _get_function(cls, security_definition, security_definition_key, environ_key, default=None):
        name = security_definition.get(security_definition_key)
        return resolve(name) if name else default

    @staticmethod
    def get_cookie_value(cookies, name):
        return cookie_parser(cookies or "").get(name)

    def check_api_key(self, api_key_info_func):
        return self._generic_check(api_key_info_func, "the session cookies are not valid, or the session has ended")

    @staticmethod
    @functools.cache
    def _accepts_kwarg(func, keyword: str) -> bool:
        return ApiKeySecurityHandler._accepts_kwarg(func, keyword)


_VALIDATORS: dict[int, tuple[dict, Draft4Validator]] = {}


def schema_validator(schema: dict, build) -> Draft4Validator:
    """One jsonschema validator per schema of the spec; Connexion would build a new one for every request."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _VALIDATORS[id(schema)] = (schema, build())
    return cached[1]


class CachedParameterValidator(ParameterValidator):
    """Connexion's parameter validation, without a deep copy of the parameter and a new validator per value."""

    def validate_parameter(self, parameter_type, value, param, param_name=None):
        if value is None or (is_nullable(param) and is_null(value)):
            return super().validate_parameter(parameter_type, value, param, param_name)
        validator = schema_validator(
            param, lambda: Draft4Validator(param.get("schema", param), format_checker=draft4_format_checker)
        )
        try:
            validator.validate(value)
        except ValidationError as exception:
            return str(exception)
        return None


def form_charset(content_type: str) -> str:
    """The charset parameter of a Content-Type, lower-cased; Connexion misses it after "; "."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


class CachedFormDataValidator(FormDataValidator):
    """Connexion's form body validation, with one validator per body schema instead of one per request,
    that also refuses bytes that are not UTF-8 (Starlette would quietly store U+FFFD in their place)."""

    @property
    def _validator(self):
        return schema_validator(self._schema, lambda: FormDataValidator._validator.fget(self))

    async def _parse(self, stream, scope):
        charset = form_charset(Headers(scope=scope).get("content-type", ""))
        if charset.replace("-", "") not in ("utf8", "usascii", "ascii"):
            raise UnsupportedMediaTypeProblem(f"form bodies must be UTF-8, not {charset}")
        raw = b"".join([chunk async for chunk in stream])
        try:
            # The separators are ASCII, so the whole body decodes if and only if every name and value does.
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="the form body is not valid UTF-8") from None

        async def replay():
            yield raw

        return await super()._parse(replay(), scope)


CACHED_VALIDATORS = {
    "parameter": CachedParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "application/x-www-form-urlencoded": CachedFormDataValidator}),
}


def in_request_scope(handler, inline: bool):
    """Wrap a handler so it runs with a pooled connection and, on secured operations, the current user.

    The session itself was checked by the token cookie's security function, before validation.
    With `inline` the handler runs on the event loop: a SQLite query takes microseconds, less than
    a hop to the threadpool (see BENCHMARKS.md). Handlers marked `@threaded`, everything on
    PostgreSQL, and any request that arrives while a threaded handler holds the write lock run in
    the threadpool.
    """

    @functools.wraps(handler)
    def run(**kwargs):
        with models.db.connection_context():
            token_info = context.get("token_info")
            if token_info:
                kwargs["user"] = token_info["user_id"]["sub"]
            return handler(**kwargs)

    if not inline or is_threaded(handler):
        return run

    @functools.wraps(handler)
    async def run_on_event_loop(**kwargs):
        if request_scope["method"] != "GET" and models.db.obj.writing_elsewhere():
            # A write would wait for that writer, stalling every request; let it wait in the threadpool.
            # Reads never wait for a writer in WAL mode, so they stay here.
            return await anyio.to_thread.run_sync(functools.partial(run, **kwargs))
        return run(**kwargs)

    return run_on_event_loop


class BodySizeLimit:
    """Refuse request bodies over a cap before anything reads them into memory.

    A chunked body (no Content-Length) is read here, up to the cap, and handed on with a
    Content-Length: Connexion treats a request without one as having no body at all.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise self.too_large()
        limited = self.limited(receive)
        if length is None and headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            more = True
            while more:
                message = await limited()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            scope = {**scope, "headers": [*scope["headers"], (b"content-length", str(len(body)).encode())]}
            limited = self.replay(bytes(body), receive)
        await self.app(scope, limited, send)

    def too_large(self) -> BadRequest:
        return BadRequest(f"the request body is larger than {self.max_bytes} bytes")

    def limited(self, receive):
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()
            return message

        return limited_receive

    @staticmethod
    def replay(body: bytes, receive):
        sent = False

        async def replay_receive():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay_receive


def create_app(
    database_url: str | None = None,
    *,
    validate_responses: bool = False,
    password_profile: str | None = None,
) -> connexion.AsyncApp:
    database_url = database_url or os.environ.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL)
    models.init_db(database_url, password_profile=password_profile or os.environ.get("CHAT_PASSWORD_PROFILE", "secure"))

    # Connexion logs every rejected form at ERROR, quoting the rejected value (a mistyped password, say):
    # a client's mistake is not a server error, and the 400 is in the access log anyway.
    logging.getLogger("connexion.validators.form_data").setLevel(logging.CRITICAL)
    inline = models.queries_are_local()
    app = connexion.AsyncApp(__name__, security_map={"apiKey": CookieApiKeyHandler})
    app.add_api(
        SPEC,
        resolver=Resolver(function_resolver=lambda name: in_request_scope(resolve(name), inline)),
        validate_responses=validate_responses,
        validator_map=CACHED_VALIDATORS,
        swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui_path="/ui"),
    )
    routes = Routes(yaml.safe_load(SPEC.read_text()))
    app.add_middleware(BodySizeLimit, position=MiddlewarePosition.BEFORE_SWAGGER)
    app.add_middleware(ExactRoutes, position=MiddlewarePosition.BEFORE_SWAGGER, routes=routes)
    map_errors(app, routes)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="chat-server", description="Serve the chat API with uvicorn.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--database",
        default=os.environ.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="sqlite:///path/to/file.db (default: %(default)s) or postgresql://user@host:5432/name",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--password-profile",
        choices=sorted(models.PASSWORD_PROFILES),
        default=os.environ.get("CHAT_PASSWORD_PROFILE", "secure"),
        help="argon2 cost; 'cheapest' is for load tests only",
    )
    parser.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (session cookies become Secure)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key")
    parser.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-Proto/For headers are trusted (default %(default)s); behind a TLS proxy, "
        "cookies are Secure when it says https",
    )
    args = parser.parse_args(argv)
    os.environ["CHAT_DATABASE_URL"] = args.database
    os.environ["CHAT_PASSWORD_PROFILE"] = args.password_profile
    models.init_db(args.database)
    uvicorn.run(
        f"{__name__}:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
