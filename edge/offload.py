"""Which requests leave the event loop, and why: the markers handlers carry (@threaded, @writes, @hashes,
@reads_own_body), and the wrapper that reads them."""

import functools
import inspect

import anyio
from connexion.context import context

from .. import models
from ..accounts import passwords
from ..core.errors import Unauthorized
from ..storage import green
from ..storage.engines import WouldWait
from ..streams import fanout
from . import session_check


def threaded(handler):
    """Keep this handler in the threadpool, off the event loop: its work grows with data (or, with @hashes, it
    hashes a password)."""
    handler.threaded = True
    return handler


def writes(handler):
    """Mark a handler that writes: it would wait for the write lock, so it leaves the event loop while one is held."""
    handler.writes = True
    return handler


def reads_own_body(handler):
    """Mark an async handler that reads its request body itself, as it arrives (an upload: edge/multipart.py):
    Connexion must neither parse nor buffer it first (dispatch.py)."""
    handler.reads_own_body = True
    return handler


def hashes(handler):
    """Mark a handler that hashes a password: it runs in the threadpool only when one of the hashing turns is free,
    and waits for one on the event loop (accounts/passwords.py, Passwords.turn)."""
    handler.hashes = True
    return threaded(handler)


def is_hashing(handler) -> bool:
    return getattr(handler, "hashes", False)


def is_threaded(handler) -> bool:
    return getattr(handler, "threaded", False)


def is_writer(handler) -> bool:
    return getattr(handler, "writes", False)


def in_request_scope(handler, inline: bool):
    """Wrap a handler so it runs with a pooled connection and, on secured operations, the current user, whose
    session is checked first, with that same connection (session_check.py).
    With `inline` (SQLite) the handler runs on the event loop: a local query takes microseconds, less
    than a hop to the threadpool (see BENCHMARKS.md). What it does decides where it runs:

    - `@hashes` handlers (login, register) wait on the event loop for a hashing turn, then run in the
      threadpool: a flood of logins never holds more pool threads than there are turns;
    - `@threaded` handlers (they hash a password or delete without bound) run in the threadpool;
    - on PostgreSQL everything else runs on the event loop too, in a greenlet that waits for the
      database's answers without blocking the loop (storage/green.py);
    - `@writes` handlers run in the threadpool while another thread holds the write lock, since
      they would wait for it and stall every request; a read never waits for a writer in WAL mode;
    - any handler whose write transaction cannot start at once all the same (the lock was taken
      just now, or another process holds SQLite's) gives up before writing anything and runs
      again in the threadpool, where it waits its turn. So a handler that may run here does all
      its writing in one transaction; one that needs several is `@threaded`.
    """

    if inspect.iscoroutinefunction(handler):  # it manages its own queries (streams/broker.py, query)

        @functools.wraps(handler)
        async def run_async(**kwargs):
            token_info = context.get("token_info")
            if token_info:
                if await session_check.refused_session(token_info):
                    raise Unauthorized(session_check.SESSION_ENDED)
                kwargs["user"] = session_check.claimed_user(token_info)
            return await handler(**kwargs)

        return run_async

    @functools.wraps(handler)
    def run(**kwargs):
        try:
            with models.db.connection_context():
                token_info = context.get("token_info")
                if token_info:  # the session is checked here, in the handler's own hop (session_check.py)
                    return session_check.run_checking_session(handler, token_info, kwargs)
                return handler(**kwargs)
        finally:
            if models.Event.recorded_since_asked():
                fanout.committed()

    if is_hashing(handler):

        @functools.wraps(handler)
        async def run_in_its_turn(**kwargs):
            # A forged session is refused before it takes a hashing turn from the logins.
            if await session_check.refused_session(context.get("token_info")):
                raise Unauthorized(session_check.SESSION_ENDED)
            async with passwords.hasher().turn():
                return await anyio.to_thread.run_sync(functools.partial(run, **kwargs))

        return run_in_its_turn
    if is_threaded(handler):
        return run
    if not inline:

        @functools.wraps(handler)
        async def run_in_greenlet(**kwargs):
            return await green.run(run, **kwargs)

        return run_in_greenlet
    writes = is_writer(handler)

    @functools.wraps(handler)
    async def run_on_event_loop(**kwargs):
        database = models.db.obj
        if not (writes and database.writing_elsewhere()):
            try:
                with database.never_waiting():
                    return run(**kwargs)
            except WouldWait:
                pass
        return await anyio.to_thread.run_sync(functools.partial(run, **kwargs))

    return run_on_event_loop
