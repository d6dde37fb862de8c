"""The event stream's responses: Server-Sent Events with resumption (sse-starlette), from the broker's rows."""

import json

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from ..streams import fanout
from ..streams.audience import Row
from ..streams.fanout import Replay, Start, Subscriber, reset_event

RETRY_MS = 3_000  # the reconnect delay a stream suggests to EventSource
# Events are for the one client that asked: no cache may keep them (security_headers.py says no-store on every
# response), and no proxy may hold them back.
NOT_STORED = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def as_sse(row: Row) -> ServerSentEvent:
    return ServerSentEvent(data=row.data, event=row.kind, id=str(row.id))


def ready_event(head: int) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps({"last_event_id": head}), event="ready", id=str(head))


def stream_response(subscriber: Subscriber, start: Start, last_event_id: int | None) -> EventSourceResponse:
    async def events():
        try:
            yield ServerSentEvent(retry=RETRY_MS)
            audience = start.audience
            if start.reset:
                yield as_sse(reset_event(start.head))
            elif last_event_id is not None:
                replay = Replay(start, last_event_id)
                async for row in replay.rows():
                    yield as_sse(row)
                if replay.ended:
                    return
                if replay.cut_short:  # too far behind: the client fetches again, and the stream goes on from here
                    yield as_sse(reset_event(start.head, too_far=True))
                    audience = start.at_head
            subscriber.go_live(audience, start.head)
            yield ready_event(start.head)
            while True:
                await subscriber.ready.wait()
                if subscriber.over:
                    return
                for row in subscriber.take():
                    yield as_sse(row)
        finally:
            fanout.broker.unsubscribe(subscriber)

    async def release() -> None:  # also when the client left before the stream's first event
        fanout.broker.unsubscribe(subscriber)

    return EventSourceResponse(
        events(),
        background=BackgroundTask(release),
        headers=NOT_STORED,
        ping=fanout.broker.settings.heartbeat,
        sep="\n",
    )
