"""What one connection may cost before the app sees it: caps on the URL and headers, a deadline for each request to
arrive, a cap on open connections, and JSON errors where uvicorn would answer in plain text."""

import json
import os
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .security_headers import with_security_headers

DEFAULTS = {
    "CHAT_MAX_URL_BYTES": "8192",
    "CHAT_MAX_HEADER_BYTES": "16384",
    "CHAT_REQUEST_TIMEOUT": "30",
    "CHAT_MAX_CONNECTIONS": "1000",
}

# After an error answer, what the client still sends is read and dropped, up to this much or this long.
MAX_DISCARD_BYTES = 8 * 1024 * 1024
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_url_bytes: int
    max_header_bytes: int
    request_timeout: float
    max_connections: int

    @classmethod
    def from_environment(cls, env=os.environ) -> "ConnectionLimits":
        setting = {name: env.get(name, default) for name, default in DEFAULTS.items()}
        limits = cls(
            int(setting["CHAT_MAX_URL_BYTES"]),
            int(setting["CHAT_MAX_HEADER_BYTES"]),
            float(setting["CHAT_REQUEST_TIMEOUT"]),
            int(setting["CHAT_MAX_CONNECTIONS"]),
        )
        if (
            min(limits.max_url_bytes, limits.max_header_bytes, limits.max_connections) < 1
            or limits.request_timeout <= 0
        ):
            raise ValueError(f"connection limits must be positive: {limits}")
        return limits


def error_bytes(status: int, message: str) -> bytes:
    """A whole HTTP response carrying {"error": message}, for answers given before there is a request to route."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in with_security_headers(headers))
    return STATUS_LINE[status] + head + b"\r\n" + body


async def over_capacity(scope, receive, send) -> None:
    """The answer to a request on a connection beyond the cap: 503, come back in a second."""
    body = json.dumps({"error": "the server has too many open connections; retry in a moment"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": with_security_headers(headers)})
    await send({"type": "http.response.body", "body": body})


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded.

    - A request line over the URL cap gets 414, and headers over their cap get 431, counted as the bytes arrive,
      so a 64 MiB header is never buffered.
    - A request whose headers and body do not all arrive within the request timeout gets 408 and is closed; so
      does a connection that sends nothing. Between requests, uvicorn's keep-alive timeout applies. A client
      that stops reading its response for as long is dropped, and the unsent response with it.
    - A request on a connection beyond the connection cap gets 503 with Retry-After instead of the app.
    - Malformed HTTP gets a JSON 400, where uvicorn sends text/plain.
    """

    limits: ConnectionLimits | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if GuardedHttpToolsProtocol.limits is None:
            GuardedHttpToolsProtocol.limits = ConnectionLimits.from_environment()
        # One timer per connection, checked lazily: re-arming a timer for every request costs throughput.
        self._timer = None
        self._write_timer = None
        self._due: float | None = None
        self._header_bytes = 0
        self._header_total = 0
        self._in_headers = True
        self._refusal: Refused | None = None
        self._discard_left: int | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._expect_request()

    def connection_lost(self, exc) -> None:
        self._cancel_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client is not reading what it asked for: the unsent response waits in memory, for a bounded time."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.request_timeout, self._stalled_reader)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _stalled_reader(self) -> None:
        self._write_timer = None
        self.logger.info("dropped a connection from %s that stopped reading its response", self.client)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._discard_left is not None:
            self._discard_left -= len(data)
            if self._discard_left <= 0:
                self.transport.close()
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        answered = self._discard_left is not None or self.transport.is_closing()
        if self._in_headers and not answered and self._header_bytes > self._header_budget():
            self._answer(431, f"the request headers are larger than {self.limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_total = 0
        self._expect_request()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._refuse(414, f"the URL is longer than {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_total += len(name) + len(value) + 4
        if self._header_total > self.limits.max_header_bytes:
            self._refuse(431, f"the request headers are larger than {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        if len(self.connections) > self.limits.max_connections:
            self.app, app = over_capacity, self.app
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._due = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for any parser error, including a refusal that a callback above raised."""
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            self._answer(400, "the request is not valid HTTP/1.1")
        else:
            self._answer(refusal.status, refusal.message)

    def _refuse(self, status: int, message: str) -> None:
        """Stop parsing from inside a parser callback; httptools turns the exception into a parser error."""
        self._refusal = Refused(status, message)
        raise self._refusal

    def _header_budget(self) -> int:
        return self.limits.max_url_bytes + self.limits.max_header_bytes + 1024

    def _expect_request(self) -> None:
        """A request is arriving: all of it is due within the request timeout from now."""
        self._due = self.loop.time() + self.limits.request_timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._due, self._check_due)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_due(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._due is None:
            return  # closed, or between requests, where uvicorn's keep-alive timeout applies
        if self.loop.time() < self._due:
            self._timer = self.loop.call_at(self._due, self._check_due)
            return
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()
            return
        self._answer(408, f"the request did not arrive within {self.limits.request_timeout:g} s", linger=False)

    def _answer(self, status: int, message: str, linger: bool = True) -> None:
        """Send the error and end the connection. With `linger`, first read and drop what the client is still
        sending, up to a bound: closing on a client mid-send makes it see a reset instead of the answer."""
        self.logger.info("refused a connection from %s: %d %s", self.client, status, message)
        if self.cycle is not None:
            # The app may be waiting for this request's body; it now sees a disconnect, and whatever it sends goes
            # nowhere.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._cancel_timer()
        self._due = None
        self.transport.write(error_bytes(status, message))
        if not linger:
            self.transport.close()
            return
        self._discard_left = MAX_DISCARD_BYTES
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
