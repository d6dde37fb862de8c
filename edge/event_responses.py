"""The event stream's response: Server-Sent Events with resumption, from the broker's rows, in one task.

An idle stream is most of what a server holds when it holds ten thousand, so this response is as small as it can
be: one coroutine that replays, then sleeps on its subscriber until rows or the broker's heartbeat wake it, with no
timer of its own. (sse-starlette, used before, runs four tasks a stream under an anyio task group, about 12.6 KiB of
an idle stream's 58 KiB.)

Under chat-server's protocol (connections.py) the stream is also handed off: the response sends its headers
through the middleware like any other, then leaves itself in the scope's `HANDOFF` slot and returns, so every
middleware frame above it is freed (about 14 KiB a stream); the protocol runs the stream with uvicorn's own
`send`, and ends it when the client goes (connection_lost) or the server stops (shutdown). Anywhere else (a test's
in-process server, plain uvicorn), the stream runs in place and a second task watches `receive` for the client
going away, since uvicorn's `send` says nothing of it.
"""

import asyncio
import contextlib
import json

from starlette.responses import Response

from ..streams import fanout
from ..streams.audience import Row
from ..streams.fanout import HEARTBEAT as HEARTBEAT_ROW
from ..streams.fanout import Replay, Start, Subscriber, reset_event

RETRY_MS = 3_000  # the reconnect delay a stream suggests to EventSource
# Events are for the one client that asked: no cache may keep them (security_headers.py says no-store on every
# response), and no proxy may hold them back.
NOT_STORED = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
HANDOFF = "chat.stream_handoff"  # scope["extensions"] key: a HandOff where the protocol takes streams over
HEARTBEAT = b": ping\n\n"


class HandOff:
    """Where a stream response leaves itself for the protocol to run once the app has returned."""

    __slots__ = ("stream",)

    def __init__(self):
        self.stream: EventStream | None = None


def encode(row: Row) -> bytes:
    """One SSE message; ephemeral rows (typing, presence) have no id, and a heartbeat is a comment."""
    if row is HEARTBEAT_ROW:
        return HEARTBEAT
    if row.id is None:
        return f"event: {row.kind}\ndata: {row.data}\n\n".encode()
    return f"id: {row.id}\nevent: {row.kind}\ndata: {row.data}\n\n".encode()


def ready_message(head: int) -> bytes:
    return f"id: {head}\nevent: ready\ndata: {json.dumps({'last_event_id': head})}\n\n".encode()


class EventStream(Response):
    """GET /api/events as a stream: `retry`, the replay from Last-Event-ID, `ready`, then live rows and
    heartbeats, until the session ends, the client goes or the server stops."""

    media_type = "text/event-stream"

    def __init__(self, subscriber: Subscriber, start: Start, last_event_id: int | None):
        # Not Response.__init__: a stream has no body to render, and so no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers({**NOT_STORED, "Connection": "keep-alive"})
        self.subscriber, self.start, self.last_event_id = subscriber, start, last_event_id

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        except BaseException:
            self.release()
            raise
        handoff = scope.get("extensions", {}).get(HANDOFF)
        if handoff is not None:
            handoff.stream = self
            return
        watching = asyncio.ensure_future(self._watch(receive))
        try:
            await self.run(send)
        finally:
            watching.cancel()

    async def _watch(self, receive) -> None:
        with contextlib.suppress(Exception):
            while (await receive())["type"] != "http.disconnect":
                pass
        self.end()

    def end(self) -> None:
        """The client went away, or the server is stopping: the stream returns at its next wake-up."""
        self.subscriber.end()

    def release(self) -> None:
        fanout.broker.unsubscribe(self.subscriber)

    async def run(self, send) -> None:
        try:
            await self._events(send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke under a write
            pass
        finally:
            self.release()

    async def _events(self, send) -> None:
        subscriber, start = self.subscriber, self.start

        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await write(f"retry: {RETRY_MS}\n\n".encode())
        audience = start.audience
        if start.reset:
            await write(encode(reset_event(start.head)))
        elif self.last_event_id is not None:
            replay = Replay(start, self.last_event_id)
            async for row in replay.rows():
                if subscriber.over:
                    return
                await write(encode(row))
            if replay.ended:
                return
            if replay.cut_short:  # too far behind: the client fetches again, and the stream goes on from here
                await write(encode(reset_event(start.head, too_far=True)))
                audience = start.at_head
        self.start = None  # the snapshot is not needed live
        subscriber.go_live(audience, start.head)
        await write(ready_message(start.head))
        ready = subscriber.ready
        while True:  # the broker's heartbeat wakes it too (fanout.HEARTBEAT): no timer of its own
            await ready.wait()
            if subscriber.over:
                return
            rows = subscriber.take()
            if rows:
                await write(b"".join(map(encode, rows)))


def stream_response(subscriber: Subscriber, start: Start, last_event_id: int | None) -> EventStream:
    return EventStream(subscriber, start, last_event_id)
