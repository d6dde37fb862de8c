"""Health checks for load balancers: liveness without the database, readiness with it."""

import anyio

from ..core.errors import Unavailable
from ..edge import shutdown
from ..models import db

# How long readiness waits for the database before it says 503.
READY_TIMEOUT_SECONDS = 2.0


async def get_health() -> dict:
    return {"status": "ok"}


async def get_ready() -> dict:
    """503 while the process is stopping, or when the database does not answer `SELECT 1` in time."""
    if shutdown.stopping():
        raise Unavailable("this server is shutting down; use another", retry_after=1)
    answered = False
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        answered = await anyio.to_thread.run_sync(_database_answers, abandon_on_cancel=True)
    if not answered:
        raise Unavailable("the database does not answer", retry_after=1)
    return {"status": "ok"}


def _database_answers() -> bool:
    try:
        with db.connection_context():
            db.execute_sql("SELECT 1").fetchone()
    except Exception:  # any failure means not ready; the pool drops a broken connection
        return False
    return True
