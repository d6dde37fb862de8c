"""Build the Connexion app from openapi/chat.yaml, map every error to {"error": ...}, and run it."""

import argparse
import functools
import logging
import os
from importlib.metadata import version
from pathlib import Path

import anyio
import connexion
import uvicorn
import yaml
from connexion.context import context
from connexion.context import scope as request_scope
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver

from . import models, ratelimit
from .errors import map_errors
from .handlers import is_threaded
from .passwords import DEFAULT_CONCURRENCY, PROFILES
from .ratelimit import DEFAULTS
from .request_limits import BodySizeLimit
from .routes import ExactRoutes, Routes, resolve
from .security import CookieApiKeyHandler
from .validation import CACHED_VALIDATORS, FormContentType

__version__ = version("chat-server")
# The spec ships as package data beside this module (pyproject.toml). It is found from __file__ because
# chat_server is a namespace package, which importlib.resources cannot read in an editable install.
SPEC = Path(__file__).parent / "openapi" / "chat.yaml"
DEFAULT_DATABASE_URL = "sqlite:///chat.db"

log = logging.getLogger("chat")


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


def create_app(
    database_url: str | None = None,
    *,
    validate_responses: bool = False,
    password_profile: str | None = None,
) -> connexion.AsyncApp:
    database_url = database_url or os.environ.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL)
    models.init_db(
        database_url,
        password_profile=password_profile or os.environ.get("CHAT_PASSWORD_PROFILE", "secure"),
        hash_concurrency=int(os.environ.get("CHAT_HASH_CONCURRENCY", DEFAULT_CONCURRENCY)),
    )
    ratelimit.configure(os.environ)

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
    app.add_middleware(FormContentType, position=MiddlewarePosition.BEFORE_SWAGGER, routes=routes)
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
        choices=sorted(PROFILES),
        default=os.environ.get("CHAT_PASSWORD_PROFILE", "secure"),
        help="argon2 cost; 'cheapest' is for load tests only",
    )
    parser.add_argument(
        "--hash-concurrency",
        type=int,
        default=int(os.environ.get("CHAT_HASH_CONCURRENCY", DEFAULT_CONCURRENCY)),
        help="password hashes at once, 64 MiB each with the secure profile (default: the core count, %(default)s); "
        "others wait up to 3 s, then get 503",
    )
    rates = parser.add_argument_group(
        "rate limits", "N/SECONDS (N in any SECONDS-long window) or off; also read from the environment variable named"
    )
    for option, variable, what in (
        ("--login-rate", "CHAT_LOGIN_RATE", "failed logins per name"),
        ("--login-address-rate", "CHAT_LOGIN_ADDRESS_RATE", "failed logins per client address"),
        ("--register-rate", "CHAT_REGISTER_RATE", "registrations per client address"),
    ):
        rates.add_argument(option, default=os.environ.get(variable, DEFAULTS[variable]), help=f"{what} ({variable})")
    rates.add_argument(
        "--rate-limit-storage",
        default=os.environ.get("CHAT_RATE_LIMIT_STORAGE", DEFAULTS["CHAT_RATE_LIMIT_STORAGE"]),
        help="where the counts live (CHAT_RATE_LIMIT_STORAGE): memory:// holds for one process only; "
        "redis://host:6379 holds across workers and hosts",
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
    os.environ["CHAT_HASH_CONCURRENCY"] = str(args.hash_concurrency)
    os.environ["CHAT_LOGIN_RATE"] = args.login_rate
    os.environ["CHAT_LOGIN_ADDRESS_RATE"] = args.login_address_rate
    os.environ["CHAT_REGISTER_RATE"] = args.register_rate
    os.environ["CHAT_RATE_LIMIT_STORAGE"] = args.rate_limit_storage
    try:
        ratelimit.configure(os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers > 1 and args.rate_limit_storage.startswith("memory://"):
        log.warning("rate limits in memory:// are per worker; with --workers %d use redis://", args.workers)
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
