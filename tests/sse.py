"""A Server-Sent Events client for tests: reads a live `GET /api/events` stream in a thread, checking every event
against its schema in openapi/chat.yaml as it arrives. The ephemeral family (typing, presence: no id) waits in a
queue of its own, so that a test of stored events never sees them and one of ephemeral events sees only them."""

import json
import queue
import threading
import time
from dataclasses import dataclass

import httpx
from openapi_schema_validator import OAS30Validator

from tests.conftest import _REGISTRY, SPEC_DOC

# Each event type's `data` schema, as the spec's `Event` discriminator maps it.
DATA_SCHEMAS = {
    kind: SPEC_DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["data"]
    for kind, ref in SPEC_DOC["components"]["schemas"]["Event"]["discriminator"]["mapping"].items()
}
# The ephemeral family (EphemeralStreamedEvent: no id), whose data the spec names by schema.
EPHEMERAL = {
    kind: {"$ref": f"#/components/schemas/{name}"} for kind, name in (("typing", "Typing"), ("presence", "Presence"))
}
assert set(EPHEMERAL) == set(SPEC_DOC["components"]["schemas"]["EphemeralStreamedEvent"]["properties"]["event"]["enum"])
DATA_SCHEMAS.update(EPHEMERAL)
STREAMED_EVENT = SPEC_DOC["components"]["schemas"]["StreamedEvent"]


def _validator(schema: dict) -> OAS30Validator:
    return OAS30Validator(schema, registry=_REGISTRY, _resolver=_REGISTRY.resolver("spec"))


def check_event(kind: str, data: dict) -> None:
    """Fail unless `data` is what the spec declares for events of this type."""
    _validator(DATA_SCHEMAS[kind]).validate(data)


@dataclass(frozen=True)
class Received:
    id: int | None
    kind: str
    data: dict


class Stream:
    """An open event stream; `next()` hands out its events in order, `close()` drops the connection."""

    def __init__(self, api_url: str, cookies: dict, last_event_id: int | None = None, query: str = ""):
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._client = httpx.Client(cookies=cookies, timeout=httpx.Timeout(10, read=None))
        self._request = self._client.build_request("GET", f"{api_url}/events{query}", headers=headers)
        self.events: queue.Queue[Received] = queue.Queue()
        self.ephemeral: queue.Queue[Received] = queue.Queue()
        self.errors: list[Exception] = []
        self.comments: list[str] = []
        self.retry: int | None = None
        self.opened, self.ended = threading.Event(), threading.Event()
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self) -> None:
        try:
            self.response = self._client.send(self._request, stream=True)
            self.opened.set()
            if self.response.status_code != 200:
                self.response.read()
                return
            fields: dict[str, str] = {}
            for line in self.response.iter_lines():
                if line == "":
                    self._dispatch(fields)
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            pass  # closed from the test's side
        finally:
            self.opened.set()
            self.ended.set()

    def _dispatch(self, fields: dict[str, str]) -> None:
        if not fields:  # a heartbeat: a comment, then the blank line
            return
        _validator(STREAMED_EVENT).validate({k: int(v) if k == "retry" else v for k, v in fields.items()})
        if "retry" in fields:
            self.retry = int(fields["retry"])
        if "data" not in fields:
            return
        kind, data = fields.get("event", "message"), json.loads(fields["data"])
        try:
            check_event(kind, data)
        except Exception as exc:  # kept for the test to see: an exception here would only end the reading thread
            self.errors.append(exc)
            raise
        if kind in EPHEMERAL:
            assert "id" not in fields, f"an ephemeral {kind} event has an id"
            self.ephemeral.put(Received(None, kind, data))
            return
        self.events.put(Received(int(fields["id"]) if "id" in fields else None, kind, data))

    def next(self, timeout: float = 10) -> Received:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def next_ephemeral(self, *kinds: str, timeout: float = 10) -> Received:
        """The next typing or presence event of one of these types (any, if none is named), skipping others."""
        while True:
            try:
                event = self.ephemeral.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no ephemeral event within {timeout} s; errors: {self.errors}") from None
            if not kinds or event.kind in kinds:
                return event

    def presence_of(self, user_id: int, timeout: float = 10) -> dict:
        """The data of the next presence event about this user (others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_ephemeral("presence", timeout=max(deadline - time.monotonic(), 0.01))
            if event.data["user_id"] == user_id:
                return event.data

    def drain_ephemeral(self) -> list[Received]:
        events = []
        while not self.ephemeral.empty():
            events.append(self.ephemeral.get())
        return events

    def next_of(self, *kinds: str, timeout: float = 10) -> Received:
        """The next event of one of these types, skipping others."""
        while True:
            event = self.next(timeout)
            if event.kind in kinds:
                return event

    def ready(self) -> Received:
        """Wait for the `ready` event: everything missed has been replayed, and live events follow."""
        return self.next_of("ready")

    def replayed(self) -> list[Received]:
        """The events before `ready`: what a resuming stream replays from the log."""
        events = []
        while (event := self.next()).kind != "ready":
            events.append(event)
        return events

    def drain(self) -> list[Received]:
        events = []
        while not self.events.empty():
            events.append(self.events.get())
        return events

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self._client.close()
        self._thread.join(5)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
