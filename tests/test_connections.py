"""A fair share of connections per client address, against a live chat-server: one address that holds half-sent
requests is answered 503 beyond its share while other addresses are served; established event streams do not use
the share; addresses come from the socket unless the peer is a proxy named in --forwarded-allow-ips."""

import contextlib
import socket
import time

import httpx
import pytest

from chat_server.edge.connections import ConnectionLimits, address_key
from tests.live_server import live_server
from tests.sse import Stream

# --max-connections 100 gives each address the default share, 10% of it.
MAX_CONNECTIONS = 100
SHARE = 10
HOLDER = "127.0.0.1"
OTHER = "127.0.0.2"  # all of 127/8 is loopback on Linux: a second client address on this machine
HALF_SENT = b"GET /api/chats HTTP/1.1\r\nHost: x\r\n"
COMPLETE = b"GET /api/chats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
PASSWORD = "long enough"
SETTLE_SECONDS = 5


def address_of(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(server, source: str = HOLDER) -> socket.socket:
    return socket.create_connection(address_of(server), timeout=10, source_address=(source, 0))


def answer(sock: socket.socket, data: bytes) -> tuple[int, bytes, bytes]:
    """Send `data` and read the one response it gets: status, lower-cased head and body."""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(data)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = next(
                (int(line[15:]) for line in head.lower().split(b"\r\n") if line[:15] == b"content-length:"), 0
            )
            if b"\r\n\r\n" in received and len(body) >= length:
                break
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.lower(), body


def request_from(server, source: str, data: bytes = COMPLETE) -> tuple[int, bytes, bytes]:
    with connect(server, source) as sock:
        return answer(sock, data)


def answer_soon(server, source: str, status: int, data: bytes = COMPLETE) -> tuple[int, bytes, bytes]:
    """Ask until the answer has `status`, for a few seconds at most, and return the last answer: the server reads
    what other connections sent, and learns that they closed, in its own time."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (answered := request_from(server, source, data))[0] != status and time.monotonic() < deadline:
        time.sleep(0.05)
    return answered


@contextlib.contextmanager
def held(server, count: int, data: bytes = HALF_SENT, source: str = HOLDER):
    """`count` connections from `source`, each having sent `data` and nothing more, open until the block ends."""
    socks = []
    try:
        for _ in range(count):
            sock = connect(server, source)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(data)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_half_sent_requests_from_one_address_leave_other_addresses_served():
    with (
        live_server("--max-connections", str(MAX_CONNECTIONS), "--request-timeout", "10") as server,
        held(server, MAX_CONNECTIONS + 5),
        httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=OTHER)) as other,
    ):
        status, _, body = request_from(server, OTHER)
        assert status == 401, body  # served by the app: an ordinary answer to a request without a session
        form = {"name": "other", "password": PASSWORD, "email": "other@ex.com"}
        assert other.post("/api/user/0", data=form).status_code == 201


def test_beyond_its_share_an_address_gets_503_with_retry_after():
    with live_server("--max-connections", str(MAX_CONNECTIONS), "--request-timeout", "10") as server:
        with held(server, SHARE):
            status, headers, body = answer_soon(server, HOLDER, 503)
        assert status == 503
        assert b"retry-after: 1" in headers
        assert b"content-type: application/json" in headers
        assert body.startswith(b'{"error": ')
        assert answer_soon(server, HOLDER, 401)[0] == 401  # the half-sent requests are gone: the share is free again


def test_an_address_may_hold_more_event_streams_than_its_share():
    with live_server("--max-connections", str(MAX_CONNECTIONS)) as server, httpx.Client(base_url=server.url) as client:
        form = {"name": "streamer", "password": PASSWORD, "email": "streamer@ex.com"}
        assert client.post("/api/user/0", data=form).status_code == 201
        streams = [Stream(server.api_url, dict(client.cookies)) for _ in range(SHARE + 5)]
        try:
            assert [stream.response.status_code for stream in streams] == [200] * (SHARE + 5)
            assert client.get("/api/chats").status_code == 200  # the streams left the address's share free
        finally:
            for stream in streams:
                stream.close()


def test_forwarded_addresses_are_not_trusted_by_default():
    # Failed logins are limited per client address: forged X-Forwarded-For headers must not give each guess its own.
    with (
        live_server("--login-address-rate", "3/60", "--login-rate", "off") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        statuses = [
            client.post(
                "/api/login",
                data={"name": f"nobody{n}", "password": "wrong password"},
                headers={"X-Forwarded-For": f"10.0.0.{n}"},
            ).status_code
            for n in range(4)
        ]
    assert statuses == [400, 400, 400, 429]


def test_behind_a_trusted_proxy_the_share_is_per_forwarded_address():
    options = ("--max-connections", str(MAX_CONNECTIONS), "--request-timeout", "10", "--forwarded-allow-ips", HOLDER)
    with live_server(*options) as server:

        def half_sent_body(client: str) -> bytes:
            return (
                b"POST /api/login HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: %s\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nname=" % client.encode()
            )

        def forwarded(client: str) -> bytes:
            return COMPLETE.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: %s\r\n\r\n" % client.encode())

        # The proxy's own idle connections count for no address; one client's unfinished requests count for it.
        with held(server, SHARE * 3, data=b""), held(server, SHARE, data=half_sent_body("10.1.1.1")):
            assert answer_soon(server, HOLDER, 503, forwarded("10.1.1.1"))[0] == 503
            assert request_from(server, HOLDER, forwarded("10.2.2.2"))[0] == 401


def test_the_default_share_is_a_tenth_of_the_connection_cap():
    assert ConnectionLimits.from_environment({"CHAT_MAX_CONNECTIONS": "1000"}).max_connections_per_address == 100
    assert ConnectionLimits.from_environment({"CHAT_MAX_CONNECTIONS": "5"}).max_connections_per_address == 1


@pytest.mark.parametrize("share", ["0", "-3", "many"])
def test_max_connections_per_address_must_be_a_positive_number(share):
    with pytest.raises(ValueError):
        ConnectionLimits.from_environment({"CHAT_MAX_CONNECTIONS_PER_ADDRESS": share})


def test_ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
