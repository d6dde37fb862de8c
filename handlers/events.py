"""The event stream: every change in your chats, as Server-Sent Events or as a JSON batch."""

from connexion.context import receive, request
from starlette.responses import JSONResponse

from ..edge.cookies import session_id
from ..edge.event_responses import NOT_STORED, stream_response
from ..streams import fanout


def _wants_json(accept: str) -> bool:
    """Whether the Accept header ranks application/json above text/event-stream (a stream is the default)."""
    ranks = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks[media.strip().lower()] = quality
    anything = ranks.get("*/*", 0.0)
    json_rank = ranks.get("application/json", ranks.get("application/*", anything))
    stream_rank = ranks.get("text/event-stream", ranks.get("text/*", anything))
    return json_rank > stream_rank


async def _disconnected() -> None:
    """Return once the client has gone away (uvicorn says so only through receive())."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def get_events(user: int, token_info: dict, last_event_id: int | None = None, timeout: int = 0):
    header = request.headers.get("last-event-id")
    if header is not None:  # validated against the spec already; EventSource resends it on every reconnect
        last_event_id = int(header)
    session = session_id(token_info)
    if _wants_json(request.headers.get("accept", "")):
        polled = await fanout.poll(user, session, last_event_id, timeout, _disconnected if timeout else None)
        return JSONResponse(polled, headers=NOT_STORED)
    subscriber = await fanout.broker.subscribe(user, session, stream=True)
    try:
        start = await fanout.begin(user, session, last_event_id)
    except BaseException:
        fanout.broker.unsubscribe(subscriber)
        raise
    return stream_response(subscriber, start, last_event_id)
