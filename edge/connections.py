"""What one connection may cost before the app sees it: caps on the URL and headers, a deadline for each request to
arrive, a cap on open connections and a share of them per client address, and JSON errors where uvicorn would
answer in plain text."""

import ipaddress
import json
import os
from dataclasses import dataclass

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .event_responses import HANDOFF, EventStream, HandOff
from .security_headers import with_security_headers

DEFAULTS = {
    "CHAT_MAX_URL_BYTES": "8192",
    "CHAT_MAX_HEADER_BYTES": "16384",
    "CHAT_REQUEST_TIMEOUT": "30",
    "CHAT_MAX_CONNECTIONS": "1000",
    "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "",  # empty: a tenth of CHAT_MAX_CONNECTIONS, at least 1
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
    max_connections_per_address: int

    @classmethod
    def from_environment(cls, env=os.environ) -> "ConnectionLimits":
        setting = {name: env.get(name, default) for name, default in DEFAULTS.items()}
        max_connections = int(setting["CHAT_MAX_CONNECTIONS"])
        share = setting["CHAT_MAX_CONNECTIONS_PER_ADDRESS"].strip()
        try:
            per_address = int(share) if share else max(1, max_connections // 10)
        except ValueError:
            raise ValueError(f"--max-connections-per-address must be a whole number, not {share!r}") from None
        limits = cls(
            int(setting["CHAT_MAX_URL_BYTES"]),
            int(setting["CHAT_MAX_HEADER_BYTES"]),
            float(setting["CHAT_REQUEST_TIMEOUT"]),
            max_connections,
            per_address,
        )
        if (
            min(limits.max_url_bytes, limits.max_header_bytes, limits.max_connections, per_address) < 1
            or limits.request_timeout <= 0
        ):
            raise ValueError(f"connection limits must be positive: {limits}")
        return limits


def address_key(host: str | None) -> str | None:
    """What an address's share is counted under: an IPv4 address, or the /64 of an IPv6 one (one site's usual
    allocation, within which a client can pick any address it likes)."""
    if not host or ":" not in host:
        return host or None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network((address, 64), strict=False))


class AddressShares:
    """The open connections of each client address in this process. Whether one holds a share is asked only when
    its address has many open (an event stream does not; it may have become one since it was counted)."""

    def __init__(self):
        self._open: dict[str, set] = {}

    def join(self, key: str, connection) -> None:
        self._open.setdefault(key, set()).add(connection)

    def leave(self, key: str, connection) -> None:
        connections = self._open.get(key)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self._open[key]

    def held(self, key: str, share: int, enough: int) -> int:
        """The shares `key`'s connections hold, counted up to `enough`; any number under `share` when fewer than
        that many are open."""
        connections = self._open.get(key, ())
        if len(connections) < share:
            return len(connections)
        held = 0
        for connection in connections:
            held += connection.holds_share()
            if held >= enough:
                break
        return held


def error_bytes(status: int, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP response carrying {"error": message}, for answers given before there is a request to route."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % retry_after))
    head = b"".join(name + b": " + value + b"\r\n" for name, value in with_security_headers(headers))
    return STATUS_LINE[status] + head + b"\r\n" + body


OVER_CAPACITY = "the server has too many open connections; retry in a moment"
OVER_SHARE = "your address has too many connections open or requests unfinished; retry in a moment"


def unavailable(message: str):
    """An app that answers every request with 503 and `message`: come back in a second."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]

    async def answer(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": with_security_headers(headers)})
        await send({"type": "http.response.body", "body": body})

    return answer


over_capacity = unavailable(OVER_CAPACITY)
over_share = unavailable(OVER_SHARE)


def is_event_stream(headers) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers)


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
    - Each client address holds a share of connections: those with a request unanswered and those idle, but not
      event streams, which the app caps per user. A connection that opens beyond its address's share is answered
      503 with Retry-After at once; beyond twice the share, it is closed without waiting for the request. Behind a
      proxy named in --forwarded-allow-ips, the proxy's idle connections count for no one, and each request from
      its headers until its response starts counts for the address the proxy forwarded.
    - Malformed HTTP gets a JSON 400, where uvicorn sends text/plain.
    """

    limits: ConnectionLimits | None = None
    shares = AddressShares()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if GuardedHttpToolsProtocol.limits is None:
            GuardedHttpToolsProtocol.limits = ConnectionLimits.from_environment()
        # uvicorn's own middleware, when --forwarded-allow-ips names proxies, so that shares key on the address it
        # will tell the app.
        self._proxies = self.app.trusted_hosts if isinstance(self.app, ProxyHeadersMiddleware) else None
        self._app, self.app = self.app, self._run_app
        self._share_key: str | None = None
        self._proxied = False
        self._stream_scope = None
        self._stream: EventStream | None = None  # an event stream this connection runs (event_responses.py)
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
        peer = self.client[0] if self.client else None
        self._proxied = self._proxies is not None and peer in self._proxies
        if not self._proxied and (key := address_key(peer)) is not None:
            held = self._take_share(key)
            if held >= self.limits.max_connections_per_address:
                # Past twice the share the address is flooding: no linger, which would hold a descriptor longer.
                self._answer(503, OVER_SHARE, linger=held < 2 * self.limits.max_connections_per_address, retry=1)
                return
        self._expect_request()

    def connection_lost(self, exc) -> None:
        if self._stream is not None:
            self._stream.end()
        self._cancel_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
        if self._share_key is not None:
            self.shares.leave(self._share_key, self)
        super().connection_lost(exc)

    def holds_share(self) -> bool:
        """Whether this connection counts toward its address's share: it does unless it is an event stream, or,
        from a proxy, between requests."""
        cycle = self.cycle
        if self._proxied:
            return cycle is not None and not cycle.response_started
        streaming = cycle is not None and cycle.response_started and not cycle.response_complete
        return not (streaming and cycle.scope is self._stream_scope)

    def _take_share(self, key: str) -> int:
        """Count this connection under `key`; return the shares the address held before."""
        if self._share_key is not None:
            self.shares.leave(self._share_key, self)
        share = self.limits.max_connections_per_address
        held = self.shares.held(key, share, 2 * share)
        self.shares.join(key, self)
        self._share_key = key
        return held

    def _forwarded_share_is_full(self) -> bool:
        key = address_key(self._forwarded_client())
        if key is None or self._take_share(key) < self.limits.max_connections_per_address:
            return False
        self.logger.info("refused a request forwarded for %s: 503 %s", key, OVER_SHARE)
        return True

    def _forwarded_client(self) -> str | None:
        """The client address uvicorn's ProxyHeadersMiddleware will give the app for this request."""
        peer = self.client[0] if self.client else None
        forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
        if not forwarded:
            return peer
        host, _ = self._proxies.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
        return host or peer

    async def _run_app(self, scope, receive, send) -> None:
        """The app, watched for a response that is an event stream (which then holds no share); an event stream
        handed off (event_responses.py) runs here, after the app and its middleware have returned."""

        async def watched(message) -> None:
            if message["type"] == "http.response.start" and is_event_stream(message.get("headers", ())):
                self._stream_scope = scope
            await send(message)

        handoff = HandOff()
        scope.setdefault("extensions", {})[HANDOFF] = handoff
        await self._app(scope, receive, watched)
        stream, handoff.stream = handoff.stream, None
        if stream is None:
            return
        self._stream = stream
        if self.transport.is_closing():
            stream.end()
        try:
            await stream.run(send)
        finally:
            self._stream = None

    def shutdown(self) -> None:
        """The server is stopping: an event stream ends now (its client reconnects elsewhere), not at the graceful
        timeout."""
        if self._stream is not None:
            self._stream.end()
        super().shutdown()

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
        refusal = None
        if len(self.connections) > self.limits.max_connections:
            refusal = over_capacity
        elif self._proxied and self._forwarded_share_is_full():
            refusal = over_share
        if refusal is not None:
            self.app, app = refusal, self.app
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

    def _answer(self, status: int, message: str, linger: bool = True, retry: int | None = None) -> None:
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
        self.transport.write(error_bytes(status, message, retry))
        if not linger:
            self.transport.close()
            return
        self._discard_left = MAX_DISCARD_BYTES
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
