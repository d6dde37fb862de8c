"""The rate limits' in-process store (`memory://`): a moving window per key, and a key that goes once its last hit
has left its window.

limits' own MemoryStorage keeps every key it has seen (an emptied key's list stays in the dict: 200,000 expired
keys held 106 MB), and after each hit its timer sweeps every key, with the GIL held. Here each hit pushes one
expiry onto a heap, and each later call pops only the expiries that have passed: the work per hit does not grow
with the number of keys, and memory follows the hits still inside their windows.
"""

import collections
import heapq
import threading
import time
from typing import ClassVar

from limits.storage import MovingWindowSupport, Storage


class MovingWindowMemory(Storage, MovingWindowSupport):
    """For limits' MovingWindowRateLimiter. Only the moving window is kept; the counter methods of other
    strategies are not."""

    STORAGE_SCHEME: ClassVar[list[str]] = ["chat-moving-window-memory"]

    def __init__(self, uri: str | None = None, **options):
        super().__init__(uri, **options)
        self._hits: dict[str, collections.deque[float]] = {}  # each key's hits in its window, oldest first
        self._windows: dict[str, float] = {}  # each key's window, in seconds
        self._expiries: list[tuple[float, str]] = []  # (when a hit leaves its window, its key), soonest first
        self._lock = threading.Lock()

    @property
    def base_exceptions(self) -> type[Exception]:
        return RuntimeError

    @property
    def keys(self) -> int:
        """How many keys hold hits: the store's size."""
        return len(self._hits)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._lock:
            self._forget(now)
            hits = self._in_window(key, now - expiry)
            if len(hits) + amount > limit:
                return False
            hits.extend([now] * amount)
            self._hits[key], self._windows[key] = hits, expiry
            heapq.heappush(self._expiries, (now + expiry, key))
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(the time of the oldest hit in the window, how many hits it holds), as limits expects."""
        now = time.time()
        with self._lock:
            self._forget(now)
            hits = self._in_window(key, now - expiry)
            return (hits[0], len(hits)) if hits else (now, 0)

    def _in_window(self, key: str, start: float) -> collections.deque[float]:
        hits = self._hits.get(key, collections.deque())
        while hits and hits[0] <= start:
            hits.popleft()
        return hits

    def _forget(self, now: float) -> None:
        """Drop the keys whose newest hit has left its window: each hit's expiry is popped once, and the newest
        hit's is popped last."""
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            hits = self._hits.get(key)
            if hits is not None and (not hits or hits[-1] <= now - self._windows[key]):
                del self._hits[key], self._windows[key]
        if not self._hits:  # a dict keeps its size after deletes; these start small again
            self._hits, self._windows = {}, {}

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
            self._windows.pop(key, None)

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._hits)
            self._hits.clear()
            self._windows.clear()
            self._expiries.clear()
            return count

    def check(self) -> bool:
        return True

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("only the moving window is kept here")

    def get(self, key: str) -> int:
        raise NotImplementedError("only the moving window is kept here")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("only the moving window is kept here")
