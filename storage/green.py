"""PostgreSQL queries on the event loop: Peewee's synchronous code, run in greenlets that wait for psycopg2's
sockets through asyncio, so a request on PostgreSQL takes no threadpool hop at all.

A request's handler (and its session check) runs in a `RequestGreenlet`, started by `run()` on the event loop.
psycopg2 calls `_wait` whenever it would block (its "wait callback", the hook gevent's and eventlet's
integrations use); inside a request greenlet that switches back to the loop, which watches the socket
(`loop.add_reader`/`add_writer`) and, when it is ready, switches straight back in from its callback (`_Run`).
Meanwhile the loop serves other requests; the coroutine that awaits `run()` wakes once, when the work is done.
Anywhere else (a threadpool thread: password hashing, unbounded deletes, pruning) psycopg2 blocks as it always
did. Peewee keeps its connection state per thread; `GreenPostgresqlDatabase` keeps it per greenlet instead, so
each request greenlet has its own pooled connection and transaction, and each thread's own greenlet its own.

At most `LIMIT` request greenlets run at once per process, so a burst of requests never asks the connection
pool for more connections than it holds; the others wait for a turn on the event loop.
"""

import asyncio
import collections
import contextlib
import contextvars
import select
import threading

import psycopg2.extensions
from greenlet import getcurrent, greenlet
from peewee import _ConnectionState
from playhouse.pool import PooledPostgresqlDatabase

# Requests on the event loop with a query in flight at once, per process; below the pool's max_connections.
LIMIT = 32


class Turns:
    """A semaphore for coroutines on any event loop: asyncio's and anyio's are bound to one loop, and the test
    client runs one loop per client. A released turn passes straight to the longest waiter, on its own loop."""

    def __init__(self, count: int):
        self._free = count
        self._lock = threading.Lock()
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = collections.deque()

    async def acquire(self) -> None:
        with self._lock:
            if self._free:
                self._free -= 1
                return
            loop = asyncio.get_running_loop()
            turn = loop.create_future()
            self._waiters.append((loop, turn))
        try:
            await turn
        except asyncio.CancelledError:
            with self._lock:
                if (loop, turn) in self._waiters:
                    self._waiters.remove((loop, turn))
                    raise
            self.release()  # the turn was already on its way here: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            loop, turn = self._waiters.popleft()
        loop.call_soon_threadsafe(self._grant, turn)

    def _grant(self, turn: asyncio.Future) -> None:
        if turn.done():  # cancelled meanwhile
            self.release()
        else:
            turn.set_result(None)


_turns = Turns(LIMIT)


class RequestGreenlet(greenlet):
    """A greenlet that runs one request's database work for `run()`; psycopg2 waits in it cooperatively."""


class GreenPostgresqlDatabase(PooledPostgresqlDatabase):
    """Peewee's pooled PostgreSQL database with its connection state per greenlet, not per thread.

    Each request greenlet gets a pooled connection and transactions of its own. Every thread runs in its own
    main greenlet, so threads still get a state each, as with Peewee's threading.local. The states live on the
    greenlets themselves (`peewee_states`, by database), so they go when their greenlet does; Peewee reads its
    state a dozen times a query, so this lookup is kept short.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Peewee guards the (per-thread) state with a lock held across opening a connection. A greenlet waiting
        # for PostgreSQL inside it would block every other greenlet of its thread for good: the lock is not
        # reentrant, and the state it guards is the greenlet's own now. The pool's own lock stays.
        self._lock = contextlib.nullcontext()

    @property
    def _state(self) -> _ConnectionState:
        current = getcurrent()
        try:
            return current.peewee_states[self]
        except AttributeError:
            current.peewee_states = {}
        except KeyError:
            pass
        state = current.peewee_states[self] = _ConnectionState()
        return state

    @_state.setter
    def _state(self, _value) -> None:
        """Peewee's constructor sets a per-thread state; the property above replaces it."""

    def _is_closed(self, connection) -> bool:
        """Whether a pooled connection is unusable, from what psycopg2 knows locally.

        Peewee asks the server (`SELECT 1`) each time a connection leaves the pool: a round trip per checkout,
        which doubled the round trips of a request. A connection the server dropped fails its next query
        instead, and psycopg2 then marks it closed, so the pool discards it.
        """
        status = connection.info.transaction_status
        return bool(connection.closed) or status == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN


def install() -> None:
    """Make psycopg2 wait through `_wait`, for every connection opened from now on."""
    psycopg2.extensions.set_wait_callback(_wait)


def _wait(connection) -> None:
    """psycopg2's wait callback: in a request greenlet, let the event loop wait unless the socket is ready already;
    elsewhere (a thread), block in poll() until it is.

    Waiting in place for fast answers instead (up to 0.5 ms) was slower: requests then ran one at a time, the
    server's CPU and PostgreSQL's never overlapping (667 against 969 requests/s for the chat list).
    """
    current = getcurrent()
    patience = 0 if isinstance(current, RequestGreenlet) else None
    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state not in (psycopg2.extensions.POLL_READ, psycopg2.extensions.POLL_WRITE):
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        reading = state == psycopg2.extensions.POLL_READ
        fd = connection.fileno()
        if not _ready(fd, reading, patience):
            current.parent.switch((reading, fd))


def _ready(fd: int, reading: bool, timeout: float | None) -> bool:
    """Whether the socket is ready to read (or write) within `timeout` seconds (None: wait until it is). poll(),
    not select(): a process holding ten thousand event streams has descriptors far above select()'s 1,023."""
    waiting = select.poll()
    waiting.register(fd, select.POLLIN if reading else select.POLLOUT)
    return bool(waiting.poll(None if timeout is None else timeout * 1000))


async def run(function, *args, **kwargs):
    """Run synchronous database code on the event loop, in a request greenlet; its result or its exception.

    The code sees the caller's context variables (Connexion's request context). If the request is cancelled
    meanwhile, the code still runs to its end, so that no connection is left mid-query, and then the
    cancellation goes on.
    """
    await _turns.acquire()
    try:
        return await _drive(function, args, kwargs)
    finally:
        _turns.release()


async def _drive(function, args, kwargs):
    loop = asyncio.get_running_loop()
    run = _Run(loop, function, args, kwargs)
    run.step()
    cancelled = None
    while not run.finished:
        try:
            await run.done
        except asyncio.CancelledError as exc:
            # The request was cancelled, not its database code: that runs to its end, then the cancellation goes on.
            cancelled = exc
            run.done = loop.create_future()
    if cancelled is not None:
        raise cancelled
    succeeded, value = run.outcome
    if succeeded:
        return value
    raise value


class _Run:
    """One request greenlet, driven straight from the event loop's socket callbacks.

    Each time the greenlet waits for its socket, the loop calls `step` when the socket is ready, and `step`
    switches into the greenlet at once. The coroutine that awaits the run (deep inside Connexion's and
    Starlette's middleware) is woken only once, when the run is over: waking it for every wait, as a future
    per wait would, resumed its whole chain of awaits each time, a third of the green path's cost.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, function, args, kwargs):
        self.loop = loop
        self.done = loop.create_future()  # resolved when the greenlet has ended; replaced if cancelled
        self.finished = False
        self.outcome: tuple[bool, object] = (False, None)
        self.watching: tuple[bool, int] | None = None
        self.greenlet = RequestGreenlet(lambda: self._body(function, args, kwargs))
        self.greenlet.gr_context = contextvars.copy_context()

    @staticmethod
    def _body(function, args, kwargs) -> tuple[bool, object]:
        try:
            return True, function(*args, **kwargs)
        except BaseException as exc:  # handed to the coroutine awaiting the run
            return False, exc

    def step(self) -> None:
        """Run the greenlet until it waits for its socket again, or ends."""
        self._unwatch()
        request = self.greenlet.switch()
        while not self.greenlet.dead:
            reading, fd = request
            try:
                (self.loop.add_reader if reading else self.loop.add_writer)(fd, self.step)
            except Exception as exc:  # the loop cannot watch it: the wait fails in the greenlet, which goes on
                request = self.greenlet.throw(exc)
                continue
            self.watching = request
            return
        self.outcome, self.finished = request, True
        if not self.done.done():
            self.done.set_result(None)

    def _unwatch(self) -> None:
        if self.watching is not None:
            reading, fd = self.watching
            self.watching = None
            (self.loop.remove_reader if reading else self.loop.remove_writer)(fd)
