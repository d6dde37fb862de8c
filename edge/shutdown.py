"""Whether this process has been told to stop: from SIGTERM (or Ctrl-C) on, readiness says 503 (handlers/health.py)
while uvicorn finishes the requests in flight, so a load balancer sends new ones elsewhere."""

import signal
import threading

_stopping = threading.Event()


def stopping() -> bool:
    return _stopping.is_set()


def begin() -> None:
    """Mark the process as stopping, as a signal would."""
    _stopping.set()


def watch() -> None:
    """Chain onto uvicorn's SIGTERM and SIGINT handlers (installed before the app starts), keeping them.

    uvicorn gives no hook for the start of its graceful shutdown, and ASGI's lifespan shutdown comes only after
    the requests in flight are done: too late to turn a load balancer away.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set signal handlers (an in-process test server runs elsewhere)
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)
        if not callable(previous) or getattr(previous, "marks_stopping", False):
            continue  # no server to hand the signal on to, or already chained

        def handler(signum, frame, previous=previous):
            begin()
            previous(signum, frame)

        handler.marks_stopping = True
        signal.signal(number, handler)
