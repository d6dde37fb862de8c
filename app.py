"""Assembly: the Connexion app built from openapi/chat.yaml with its layers, and the `chat-server` command."""

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import sys
from importlib.metadata import version
from pathlib import Path

import connexion
import peewee
import uvicorn
import yaml
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver

from . import models
from .accounts import consent, credentials, passwords, privacy, ratelimit
from .accounts.passwords import DEFAULT_CONCURRENCY, PROFILES
from .accounts.ratelimit import DEFAULTS as RATE_DEFAULTS
from .edge import csrf, idempotency, search_lane, shutdown
from .edge.connections import DEFAULTS as CONNECTION_DEFAULTS
from .edge.connections import ConnectionLimits
from .edge.dispatch import decorate_once
from .edge.offload import in_request_scope
from .edge.request_limits import BodySizeLimit, QueryParameterLimit
from .edge.responses import map_errors
from .edge.routes import ExactRoutes, Routes, resolve
from .edge.security import CookieApiKeyHandler
from .edge.security_headers import SecurityHeaders
from .edge.validation import CACHED_VALIDATORS, FormContentType, path_parameters_per_operation, streamed_operations
from .edge.web_client import WebClient
from .files import uploads
from .storage import migrations
from .streams import fanout, presence
from .streams.fanout import DEFAULTS as EVENT_DEFAULTS

__version__ = version("chat-server")
# The spec ships as package data beside this module (pyproject.toml). It is found from __file__ because
# chat_server is a namespace package, which importlib.resources cannot read in an editable install.
SPEC = Path(__file__).parent / "openapi" / "chat.yaml"
DEFAULT_DATABASE_URL = "sqlite:///chat.db"
MULTIPART_FRAMING_BYTES = 64 * 1024
GC_YOUNG_THRESHOLD = 50_000  # tracked objects allocated and not yet freed before a young collection (CPython: 700)

log = logging.getLogger("chat")


def create_app(
    database_url: str | None = None,
    *,
    validate_responses: bool = False,
    password_profile: str | None = None,
) -> connexion.AsyncApp:
    database_url = database_url or os.environ.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL)
    # chat-server has migrated before starting the workers (or, with --no-migrate, they only check).
    models.init_db(database_url, migrate=os.environ.get("CHAT_MIGRATE", "1") != "0")
    passwords.configure(
        password_profile or os.environ.get("CHAT_PASSWORD_PROFILE", "secure"),
        int(os.environ.get("CHAT_HASH_CONCURRENCY", DEFAULT_CONCURRENCY)),
    )
    ratelimit.configure(os.environ)
    fanout.configure(os.environ)
    credentials.configure(os.environ)
    privacy.configure(os.environ)
    search_lane.configure(os.environ)
    consent.configure(os.environ)
    # chat-server removed the spools a crash left before starting the workers; a worker's siblings may be writing.
    files = uploads.configure(os.environ, database_url, clean=os.environ.get("CHAT_MIGRATE") is None)

    # Connexion logs every rejected form at ERROR, quoting the rejected value (a mistyped password, say):
    # a client's mistake is not a server error, and the 400 is in the access log anyway.
    logging.getLogger("connexion.validators.form_data").setLevel(logging.CRITICAL)
    inline = models.queries_are_local()
    app = connexion.AsyncApp(__name__, security_map={"apiKey": CookieApiKeyHandler}, lifespan=background_work)
    decorate_once(app)
    spec = yaml.safe_load(SPEC.read_text())
    routes = Routes(spec)
    app.add_api(
        path_parameters_per_operation(spec),
        resolver=Resolver(function_resolver=lambda name: in_request_scope(resolve(name), inline)),
        validate_responses=validate_responses,
        strict_validation=True,
        validator_map=CACHED_VALIDATORS,
        swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui_path="/ui"),
    )
    app.add_middleware(SecurityHeaders, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(WebClient, position=MiddlewarePosition.BEFORE_SWAGGER)
    app.add_middleware(
        csrf.CrossSiteRequests,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        routes=routes,
        allowed=csrf.allowed_origins(),
    )
    # An upload's body may be as large as --max-upload-size, and the multipart framing around the file besides.
    upload_caps = {operation: files.max_size + MULTIPART_FRAMING_BYTES for operation in streamed_operations(spec)}
    app.add_middleware(BodySizeLimit, position=MiddlewarePosition.BEFORE_SWAGGER, streamed=upload_caps)
    app.add_middleware(QueryParameterLimit, position=MiddlewarePosition.BEFORE_SWAGGER, routes=routes, spec=spec)
    app.add_middleware(ExactRoutes, position=MiddlewarePosition.BEFORE_SWAGGER, routes=routes)
    app.add_middleware(FormContentType, position=MiddlewarePosition.BEFORE_SWAGGER, routes=routes)
    map_errors(app, routes)
    return app


@contextlib.asynccontextmanager
async def background_work(app):
    """What runs beside the requests while the server is up: the event broker with its ephemeral channel and
    presence sweep, pruning the event log and expired idempotency keys, collecting unused uploads, and watching for
    the signal to stop (readiness turns 503). On the way out, this process's streams stop counting for presence."""
    shutdown.watch()
    # What startup made (modules, the spec and its validators) lives as long as the process: out of the collector's
    # way, so that a full collection with ten thousand streams open walks theirs only. And a young collection only
    # every 50,000 surviving objects, not 700: ten thousand streams each keep a waiter or two alive between two
    # events, which at 700 the collector promotes by the thousand until a full collection (about a second at that
    # size) walks them all; at 50,000 most are gone before it looks (BENCHMARKS.md, issue 25).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    fanout.broker.start()
    pruning = [
        asyncio.create_task(fanout.prune_forever(), name="event pruning"),
        asyncio.create_task(idempotency.prune_forever(), name="idempotency key pruning"),
        asyncio.create_task(uploads.collect_forever(), name="unused upload collection"),
    ]
    try:
        yield
    finally:
        for task in pruning:
            task.cancel()
        await fanout.broker.leave()


def allow_more_open_files(connections: int) -> None:
    """Raise the soft open-file limit toward the hard one, so the connection cap is reached before the limit is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256 if hard == resource.RLIM_INFINITY else min(hard, connections + 256)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft < connections + 64:
        log.warning("only %d open files allowed; lower --max-connections below that", soft)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds, not {text}")
    return value


def prepare_schema(database_url: str, migrate: bool) -> None:
    """Migrate once, before uvicorn starts the workers (whose create_app then finds nothing to do); with
    --no-migrate, refuse a database that is behind rather than serve 500s."""
    database = models.connect(database_url)
    try:
        if migrate:
            print(migrations.describe(migrations.upgrade(database), database), flush=True)
        else:
            migrations.require_latest(database)
    finally:
        database.close_all()


def migrate_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="chat-server migrate",
        description="Bring the database's schema up to date, then exit. Safe beside running servers and from "
        "several hosts at once: migrations take turns on a lock, and each runs once.",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="sqlite:///path/to/file.db (default: %(default)s) or postgresql://user@host:5432/name (CHAT_DATABASE_URL)",
    )
    args = parser.parse_args(argv)
    database = models.connect(args.database)
    try:
        print(migrations.describe(migrations.upgrade(database), database))
    except peewee.OperationalError as exc:
        parser.exit(1, f"chat-server migrate: {exc}\n")
    finally:
        database.close_all()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate"]:
        migrate_command(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="Serve the chat API with uvicorn. `chat-server migrate` upgrades the database's schema only.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    exported: dict[str, str] = {}

    def setting(group, flag: str, variable: str, default, **kwargs) -> None:
        """An option read from, and handed on to the workers through, an environment variable."""
        kwargs["help"] += f" ({variable})"
        action = group.add_argument(flag, default=os.environ.get(variable, default), **kwargs)
        exported[action.dest] = variable

    setting(
        parser,
        "--database",
        "CHAT_DATABASE_URL",
        DEFAULT_DATABASE_URL,
        help="sqlite:///path/to/file.db (default: %(default)s) or postgresql://user@host:5432/name",
    )
    parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not upgrade the database's schema at start (run `chat-server migrate` yourself); refuse to start "
        "if it is behind",
    )
    parser.add_argument("--workers", type=int, default=1)
    setting(
        parser,
        "--password-profile",
        "CHAT_PASSWORD_PROFILE",
        "secure",
        choices=sorted(PROFILES),
        help="argon2 cost; 'cheapest' is for load tests only",
    )
    setting(
        parser,
        "--hash-concurrency",
        "CHAT_HASH_CONCURRENCY",
        str(DEFAULT_CONCURRENCY),
        type=positive_int,
        help="logins and registrations at once per worker, 64 MiB each with the secure profile (default: the core "
        "count, %(default)s); others wait up to 3 s, then get 503",
    )
    searches = parser.add_argument_group("search")
    setting(
        searches,
        "--search-concurrency",
        "CHAT_SEARCH_CONCURRENCY",
        search_lane.DEFAULTS["CHAT_SEARCH_CONCURRENCY"],
        type=positive_int,
        help="searches at once per worker, in threads of their own (default: the core count, %(default)s)",
    )
    setting(
        searches,
        "--search-budget",
        "CHAT_SEARCH_BUDGET",
        search_lane.DEFAULTS["CHAT_SEARCH_BUDGET"],
        type=positive_seconds,
        help="seconds a search may take, waiting for a slot included, before it gets 503 (default %(default)s)",
    )
    rates = parser.add_argument_group("rate limits", "N/SECONDS (N in any SECONDS-long window) or off")
    for flag, variable, what in (
        ("--login-rate", "CHAT_LOGIN_RATE", "failed logins per name"),
        ("--login-address-rate", "CHAT_LOGIN_ADDRESS_RATE", "failed logins per client address"),
        ("--register-rate", "CHAT_REGISTER_RATE", "registrations per client address"),
        ("--invite-rate", "CHAT_INVITE_RATE", "invitations a user may send (adds that need consent)"),
        ("--upload-rate", "CHAT_UPLOAD_RATE", "uploads a user may make"),
    ):
        setting(rates, flag, variable, RATE_DEFAULTS[variable], help=f"{what}, %(default)s")
    setting(
        rates,
        "--rate-limit-storage",
        "CHAT_RATE_LIMIT_STORAGE",
        RATE_DEFAULTS["CHAT_RATE_LIMIT_STORAGE"],
        help="where the counts live: memory:// holds for one process only; redis://host:6379 holds across workers "
        "and hosts",
    )
    files = parser.add_argument_group("uploads")
    setting(
        files,
        "--uploads",
        "CHAT_UPLOADS",
        uploads.DEFAULTS["CHAT_UPLOADS"],
        help="where uploaded files live: a directory (default: beside the SQLite file, chat.db's in chat-uploads/; "
        "uploads/ for PostgreSQL), or `database` to keep them in the database, which a cluster's hosts share",
    )
    for flag, variable, what in (
        ("--max-upload-size", "CHAT_MAX_UPLOAD_SIZE", "largest file an upload may be: 25M, 512K, 1G"),
        ("--upload-quota", "CHAT_UPLOAD_QUOTA", "what one user's uploads may total"),
        ("--upload-ttl", "CHAT_UPLOAD_TTL", "an upload nothing ever used is deleted this long after: 24h, 30m"),
    ):
        setting(files, flag, variable, uploads.DEFAULTS[variable], help=f"{what}, %(default)s")
    streams = parser.add_argument_group("event streams")
    for flag, variable, what in (
        ("--event-retention", "CHAT_EVENT_RETENTION", "how long events are kept for resuming streams: 7d, 12h, 30m"),
        ("--event-heartbeat", "CHAT_EVENT_HEARTBEAT", "seconds between heartbeat comments on a stream"),
        ("--max-streams-per-user", "CHAT_MAX_STREAMS_PER_USER", "event streams a user may hold open per process"),
        (
            "--pubsub",
            "CHAT_PUBSUB",
            "how typing and presence reach the other workers and hosts: auto (PostgreSQL NOTIFY; on SQLite a "
            "table when --workers is above 1), local (this process only) or redis://host:6379",
        ),
        (
            "--presence-grace",
            "CHAT_PRESENCE_GRACE",
            "seconds after a user's last stream closes before they show offline (a reconnect within it is unseen)",
        ),
        (
            "--presence-timeout",
            "CHAT_PRESENCE_TIMEOUT",
            "seconds a process may be silent before its streams stop counting (a host that died)",
        ),
    ):
        setting(streams, flag, variable, EVENT_DEFAULTS[variable], help=f"{what}, %(default)s")
    accounts = parser.add_argument_group("accounts and sessions")
    for flag, variable, what in (
        (
            "--session-idle",
            "CHAT_SESSION_IDLE",
            "a session ends this long after its last request (at least 60s): 14d, 30m",
        ),
        ("--session-lifetime", "CHAT_SESSION_LIFETIME", "a session ends this long after login in any case"),
    ):
        setting(accounts, flag, variable, credentials.DEFAULTS[variable], help=f"{what}, %(default)s")
    setting(
        accounts,
        "--email-visibility",
        "CHAT_EMAIL_VISIBILITY",
        privacy.DEFAULT,
        choices=privacy.CHOICES,
        help="who sees a user's email: the user only, also the people who share a chat with them that they joined "
        "themselves (default), or every logged-in user",
    )
    setting(
        accounts,
        "--default-who-can-add-me",
        "CHAT_DEFAULT_WHO_CAN_ADD_ME",
        consent.DEFAULT,
        choices=consent.CHOICES,
        help="who may add a user to a chat at once until they choose (their who_can_add_me); anyone else invites "
        "them: anyone, contacts (people who share a chat they joined themselves; the default) or nobody",
    )
    setting(
        accounts,
        "--allowed-origins",
        "CHAT_ALLOWED_ORIGINS",
        "",
        help="origins besides the server's own (https://app.example.com, comma-separated) whose pages may POST, "
        "PUT and DELETE with the user's cookies",
    )
    connections = parser.add_argument_group("connections")
    for flag, variable, kind, what in (
        ("--request-timeout", "CHAT_REQUEST_TIMEOUT", float, "seconds for a request's headers and body to arrive"),
        ("--max-connections", "CHAT_MAX_CONNECTIONS", int, "open connections; a request beyond them gets 503"),
        ("--max-url-bytes", "CHAT_MAX_URL_BYTES", int, "longest request line; longer gets 414"),
        ("--max-header-bytes", "CHAT_MAX_HEADER_BYTES", int, "largest header block; larger gets 431"),
    ):
        setting(connections, flag, variable, CONNECTION_DEFAULTS[variable], type=kind, help=f"{what}, %(default)s")
    setting(
        connections,
        "--max-connections-per-address",
        "CHAT_MAX_CONNECTIONS_PER_ADDRESS",
        CONNECTION_DEFAULTS["CHAT_MAX_CONNECTIONS_PER_ADDRESS"],
        help="connections one client address may hold with a request unanswered or idle (event streams aside); "
        "beyond them it gets 503 (default: a tenth of --max-connections)",
    )
    connections.add_argument(
        "--keep-alive-timeout", type=float, default=5, help="seconds an idle connection stays open (%(default)s)"
    )
    connections.add_argument(
        "--graceful-timeout",
        type=float,
        default=30,
        help="on SIGTERM, seconds to let requests in flight finish before the process exits (%(default)s)",
    )
    parser.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (session cookies become Secure)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key")
    parser.add_argument(
        "--forwarded-allow-ips",
        default="",
        help="proxies whose X-Forwarded-Proto/For headers are trusted: addresses or networks, comma-separated "
        "(default: none); the client's address, for rate limits and connection shares, is then the one they "
        "forward, and behind a TLS proxy cookies are Secure when it says https",
    )
    args = parser.parse_args(argv)
    for dest, variable in exported.items():
        os.environ[variable] = str(getattr(args, dest))
    os.environ["CHAT_WORKERS"] = str(args.workers)  # the ephemeral channel's default depends on it (streams/pubsub.py)
    try:
        limits = ratelimit.configure(os.environ)
        fanout.Settings.from_environment(os.environ)
        presence.Settings.from_environment(os.environ)
        credentials.SessionSettings.from_environment(os.environ)
        consent.default_who_can_add_me(os.environ)
        files = uploads.configure(os.environ, args.database)
        csrf.allowed_origins(os.environ)
        ConnectionLimits.from_environment()
    except ValueError as exc:
        parser.error(str(exc))
    if not limits.storage_answers():
        parser.error(f"the rate-limit storage {args.rate_limit_storage} does not answer")
    allow_more_open_files(args.max_connections)
    if isinstance(files.store, uploads.stores.FileStore) and not args.database.startswith("sqlite"):
        log.warning(
            "uploads are kept in %s on this host only; with several hosts use --uploads database or a shared directory",
            files.store.root.resolve(),
        )
    if args.workers > 1 and args.rate_limit_storage.startswith("memory://"):
        log.warning("rate limits in memory:// are per worker; with --workers %d use redis://", args.workers)
    os.environ["CHAT_MIGRATE"] = "1" if args.migrate else "0"
    try:
        prepare_schema(args.database, args.migrate)
    except (migrations.SchemaBehind, peewee.OperationalError) as exc:
        parser.error(str(exc))
    uvicorn.run(
        f"{__name__}:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        # Without a proxy to trust, no X-Forwarded-* header is read at all (uvicorn's own default trusts 127.0.0.1).
        proxy_headers=bool(args.forwarded_allow_ips.strip()),
        forwarded_allow_ips=args.forwarded_allow_ips,
        http=f"{__package__}.edge.connections:GuardedHttpToolsProtocol",
        ws="none",
        timeout_keep_alive=args.keep_alive_timeout,
        timeout_graceful_shutdown=args.graceful_timeout,
    )


if __name__ == "__main__":
    main()
