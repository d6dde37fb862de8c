"""Idempotency-Key: a retried create, send or add gets the first response again instead of doing the work twice.

A request with a key runs in one transaction that first claims the key: it inserts the user's row for the key,
runs the handler (whose own transactions become savepoints), stores the response in the row and commits. A
repeat finds the row and replays it; an error rolls everything back, the claim included, so the client may retry.
Concurrent repeats cannot both claim: on SQLite write transactions run one at a time, and on PostgreSQL the
second claim waits on the unique (user, key) index until the first commits, and then finds its row. Nothing
else is locked before the claim, so the wait cannot be part of a deadlock.
"""

import asyncio
import datetime
import functools
import hashlib
import json
import logging

import anyio
from connexion.context import request
from peewee import EXCLUDED, SQL

from ..core.errors import Conflict
from ..core.times import utcnow
from ..models import IdempotencyKey, db
from ..storage.batches import BATCH_ROWS, in_batches
from ..storage.statement import Statement

log = logging.getLogger("chat")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEEP_FOR = datetime.timedelta(hours=24)
# Pruning spares an hour more than lookups honour, so it never deletes a row a request in flight just found live.
PRUNE_AFTER = KEEP_FOR + datetime.timedelta(hours=1)
PRUNE_SECONDS = 600
# Handler arguments that come from the session, not from the request: a retry from another device is the same.
SESSION_ARGUMENTS = frozenset({"user", "token_info"})


def idempotent(handler):
    """Let this handler's requests carry an Idempotency-Key (openapi/chat.yaml, components/parameters).

    The handler takes `user` and returns a JSON body, optionally with a status and headers; of the headers
    only Location is stored and replayed. Connexion passes no header parameters to handlers, so the key is
    read from the request.
    """
    operation = handler.__name__

    @functools.wraps(handler)
    def run(**arguments):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(**arguments)
        user, fingerprint = arguments["user"], request_hash(operation, arguments)
        with db.atomic():
            now = utcnow()
            claimed = _CLAIM.first(user, key, fingerprint, now, now - KEEP_FOR)
            if claimed is None:
                return _replay(user, key, fingerprint, now)
            body, status, headers = _normalized(handler(**arguments))
            if 200 <= status < 300:
                _REMEMBER.execute(status, json.dumps(body), headers.get("Location"), claimed[0])
            else:
                IdempotencyKey.delete().where(IdempotencyKey.id == claimed[0]).execute()
            return body, status, headers

    return run


def request_hash(operation: str, arguments: dict) -> str:
    """What makes two requests the same: the operation, its path parameters and its body, as canonical JSON."""
    sent = {name: value for name, value in arguments.items() if name not in SESSION_ARGUMENTS}
    canonical = json.dumps([operation, sent], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _normalized(result) -> tuple:
    """A handler's answer as (body, status, headers), whichever of Connexion's shapes it came in."""
    if not isinstance(result, tuple):
        return result, 200, {}
    body, status, *headers = result
    return body, status, dict(headers[0]) if headers else {}


def _replay(user: int, key: str, fingerprint: str, now: datetime.datetime) -> tuple:
    stored = _STORED.first(user, key, now - KEEP_FOR)
    if stored is None:  # only if the row was pruned meanwhile, which PRUNE_AFTER rules out
        raise Conflict("the request with this Idempotency-Key changed meanwhile; retry")
    request_hash_, status, body, location = stored
    if request_hash_ != fingerprint:
        raise Conflict(f"this {HEADER} was used for a different request; send a new key")
    headers = {REPLAYED: "true"}
    if location is not None:
        headers["Location"] = location
    return json.loads(body), status, headers


def prune_expired(now: datetime.datetime | None = None) -> None:
    """Delete the keys older than a day (and an hour), a batch per transaction."""
    cutoff = (now or utcnow()) - PRUNE_AFTER
    with db.connection_context():
        in_batches(lambda: _prune_step(cutoff))


def _prune_step(cutoff: datetime.datetime) -> bool:
    expired = IdempotencyKey.select(IdempotencyKey.id).where(IdempotencyKey.created_at < cutoff).limit(BATCH_ROWS)
    return IdempotencyKey.delete().where(IdempotencyKey.id.in_(expired)).execute() == BATCH_ROWS


async def prune_forever(interval: float = PRUNE_SECONDS) -> None:
    """Prune expired keys in the background every `interval` seconds; lookups ignore them meanwhile."""
    while True:
        try:
            await anyio.to_thread.run_sync(prune_expired)
        except Exception:
            log.exception("pruning expired idempotency keys failed; trying again later")
        await asyncio.sleep(interval)


# Insert the user's row for the key, or take over an expired one; the row's id, else none: a live row holds the key.
_CLAIM = Statement(
    lambda: (
        IdempotencyKey.insert(user_id=0, key="", request_hash="", created_at=utcnow())
        .on_conflict(
            conflict_target=[IdempotencyKey.user_id, IdempotencyKey.key],
            update={
                IdempotencyKey.request_hash: EXCLUDED.request_hash,
                IdempotencyKey.status: SQL("NULL"),
                IdempotencyKey.body: SQL("NULL"),
                IdempotencyKey.location: SQL("NULL"),
                IdempotencyKey.created_at: EXCLUDED.created_at,
            },
            where=IdempotencyKey.created_at < utcnow(),
        )
        .returning(IdempotencyKey.id)
    )
)
_REMEMBER = Statement(lambda: IdempotencyKey.update(status=0, body="", location="").where(IdempotencyKey.id == 0))
_STORED = Statement(
    lambda: IdempotencyKey.select(
        IdempotencyKey.request_hash, IdempotencyKey.status, IdempotencyKey.body, IdempotencyKey.location
    ).where(IdempotencyKey.user_id == 0, IdempotencyKey.key == "", IdempotencyKey.created_at >= utcnow())
)
