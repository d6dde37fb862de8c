"""Searches in a lane of their own: at most `concurrency` at once per process, each in a thread of the lane's own
pool, never one of the threadpool's that logins, sends and reads need, and under a time budget that counts the
wait for a slot; beyond either, 503 with Retry-After."""

import asyncio
import concurrent.futures
import os
import time

from .. import models
from ..core.errors import Unavailable
from ..storage.green import Turns

DEFAULT_CONCURRENCY = os.cpu_count() or 1
DEFAULT_BUDGET_SECONDS = 2.0
DEFAULTS = {"CHAT_SEARCH_CONCURRENCY": str(DEFAULT_CONCURRENCY), "CHAT_SEARCH_BUDGET": str(DEFAULT_BUDGET_SECONDS)}
THREAD_NAME = "search-lane"


class SearchLane:
    """Run `function(seconds_left, *args)` in the lane: wait on the event loop for one of the turns, then run in the
    lane's pool with a pooled connection. A search has `budget_seconds` in all, waiting included; the function is
    handed what is left, to bound its queries by (storage/search.py, budget)."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY, budget_seconds: float = DEFAULT_BUDGET_SECONDS):
        if concurrency < 1 or budget_seconds <= 0:
            raise ValueError("searches need at least one slot and a budget above 0 seconds")
        self.concurrency = concurrency
        self.budget_seconds = budget_seconds
        self._turns = Turns(concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix=THREAD_NAME)

    async def run(self, function, *args):
        deadline = time.monotonic() + self.budget_seconds
        try:
            await asyncio.wait_for(self._turns.acquire(), self.budget_seconds)
        except TimeoutError:
            raise Unavailable("the server is busy with other searches; retry in a moment", retry_after=1) from None
        try:
            future = self._pool.submit(_with_connection, function, deadline, *args)
        except BaseException:
            self._turns.release()
            raise
        # The turn is given back when the thread is done, not when the request is: a client that goes away
        # leaves its search running, and no more than `concurrency` ever run.
        future.add_done_callback(lambda _: self._turns.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _with_connection(function, deadline: float, *args):
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("the server is busy with other searches; retry in a moment", retry_after=1)
    with models.db.connection_context():
        return function(left, *args)


_lane: SearchLane | None = None


def configure(environ) -> SearchLane:
    """Build this process's lane from CHAT_SEARCH_CONCURRENCY and CHAT_SEARCH_BUDGET (seconds); create_app does."""
    global _lane
    concurrency = int(environ.get("CHAT_SEARCH_CONCURRENCY", DEFAULTS["CHAT_SEARCH_CONCURRENCY"]))
    budget = float(environ.get("CHAT_SEARCH_BUDGET", DEFAULTS["CHAT_SEARCH_BUDGET"]))
    lane = SearchLane(concurrency, budget)
    if _lane is not None:
        _lane.close()
    _lane = lane
    return lane


def lane() -> SearchLane:
    """The lane configure() built; one with the defaults, built now, for a caller that never called it."""
    return _lane or configure({})
