"""Health checks: liveness always, readiness only with a database that answers and a process not stopping."""

import contextlib
import os
import signal
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from chat_server import models
from chat_server.app import create_app
from chat_server.edge import shutdown

from .conftest import fresh_postgres, new_client


def test_health_and_ready_need_no_session(client):
    for path in ("/api/health", "/api/ready"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_ready_is_unavailable_once_the_process_is_stopping(client, monkeypatch):
    monkeypatch.setattr(shutdown, "_stopping", threading.Event())
    shutdown.begin()
    response = client.get("/api/ready")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "shutting down" in response.json()["error"]
    assert client.get("/api/health").status_code == 200


def test_sigterm_marks_the_process_stopping_and_reaches_the_server_handler(monkeypatch):
    monkeypatch.setattr(shutdown, "_stopping", threading.Event())
    received = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        shutdown.watch()
        shutdown.watch()  # a second app in the same process chains nothing twice
        os.kill(os.getpid(), signal.SIGTERM)
        assert shutdown.stopping()
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, original)


class Relay:
    """A TCP relay to PostgreSQL that can be cut, as a network failure or a stopped server would cut it."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for each in (self.listener, *self.sockets):  # shutdown() also wakes the thread blocked in accept()
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()


@pytest.mark.postgres
def test_ready_is_unavailable_while_postgresql_does_not_answer():
    url = urlsplit(fresh_postgres())
    relay = Relay((url.hostname, url.port or 5432))
    through_relay = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{relay.port}", query="connect_timeout=2"))
    app = create_app(through_relay, validate_responses=True, password_profile="cheapest")
    try:
        client = new_client(app)
        assert client.get("/api/ready").status_code == 200
        relay.cut()
        response = client.get("/api/ready")
        assert response.status_code == 503
        assert response.json() == {"error": "the database does not answer"}
        assert client.get("/api/health").status_code == 200
    finally:
        relay.cut()
        models.db.close_all()
