"""A multi-host rehearsal on one machine: chat-server processes on their own ports over one fresh PostgreSQL
database, with Debian's HAProxy in front, round-robin, health-checking `GET /api/ready` (tests/test_cluster.py)."""

import contextlib
import csv
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

from tests.live_server import LiveServer, _free_port, live_server

HAPROXY = Path("/usr/sbin/haproxy")
POSTGRES_URL = os.environ.get("CHAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379"
DATABASE_NAME = "cluster_rehearsal"
START_TIMEOUT_SECONDS = 30
# Short health checks so that a dead backend is out within about a second: two failed checks 300 ms apart.
CHECK = "check inter 300ms fall 2 rise 1"

CONFIG = """\
global
    stats socket {admin_socket} mode 600 level admin
    maxconn 4000

defaults
    mode http
    option forwardfor
    # A request whose connection to a backend is refused is tried again, the last time on another backend.
    option redispatch
    # Send each piece of a response (an event on a stream) at once, not gathered for a moment (Nagle's algorithm).
    option http-no-delay
    retries 2
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 5s

frontend chat
    bind 127.0.0.1:{port}
    default_backend hosts

backend hosts
    balance roundrobin
    option httpchk
    http-check send meth GET uri /api/ready ver HTTP/1.1 hdr Host haproxy
    http-check expect status 200
    # Which backend answered, so that tests can prove requests landed on each.
    http-response set-header X-Served-By %s
{servers}
"""


def fresh_database(name: str = DATABASE_NAME) -> str:
    """Drop and create `name` on the test PostgreSQL server and return its URL: a new, empty database per cluster."""
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    admin = psycopg2.connect(parts._replace(path="/postgres").geturl(), connect_timeout=3)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    return parts._replace(path=f"/{name}").geturl()


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@dataclass(frozen=True)
class Cluster:
    url: str
    backends: dict[str, LiveServer]
    admin_socket: Path
    database_url: str

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def admin(self, command: str) -> str:
        """One command on HAProxy's admin socket, and its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(self.admin_socket))
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` for each backend server, by name: `status` (UP, DOWN, or `UP 1/2` on the way down),
        `hrsp_2xx` (2xx answers it gave) and the rest of HAProxy's CSV columns."""
        lines = self.admin("show stat").removeprefix("# ").splitlines()
        return {row["svname"]: row for row in csv.DictReader(lines) if row["svname"] in self.backends}

    def status(self, name: str) -> str:
        return self.stats()[name]["status"]

    def wait_for_status(self, name: str, wanted: str, timeout: float = 10, every: float = 0.02) -> float:
        """Poll until HAProxy says `name` is `wanted`; return the monotonic time at which that was first seen."""
        deadline = time.monotonic() + timeout
        while (status := self.status(name)) != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy still says {name} is {status!r} after {timeout} s, not {wanted!r}")
            time.sleep(every)
        return time.monotonic()

    def kill(self, name: str) -> None:
        """SIGKILL to the host's every process: it is gone at once, with no graceful shutdown, requests cut off
        mid-flight, and nothing cleaned up in the database (its presence rows stay until the others time it out)."""
        process = self.backends[name].process
        workers = _descendants(process.pid)  # before the kill, which hands them to init
        process.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def _descendants(pid: int) -> list[int]:
    """The processes under `pid`, from /proc: a host started with `--workers N` is uvicorn's supervisor and N
    workers. (live_server does not give a host a process group of its own; it shares pytest's.)"""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after the command's name
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, unvisited = [], [pid]
    while unvisited:
        below = children.get(unvisited.pop(), [])
        found += below
        unvisited += below
    return found


def _haproxy_config(port: int, admin_socket: Path, backends: dict[str, LiveServer]) -> str:
    servers = "\n".join(
        f"    server {name} {server.url.removeprefix('http://')} {CHECK}" for name, server in backends.items()
    )
    return CONFIG.format(port=port, admin_socket=admin_socket, servers=servers)


def _wait_until_serving(cluster: Cluster, haproxy: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if haproxy.poll() is not None:
            raise RuntimeError(f"haproxy exited with {haproxy.returncode}:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError, httpx.TransportError):
            states = {row["status"] for row in cluster.stats().values()}
            if states == {"UP"} and httpx.get(cluster.api_url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"HAProxy did not see every backend up within {START_TIMEOUT_SECONDS} s")


@contextlib.contextmanager
def running_cluster(database_url: str, *options: str, names: tuple[str, ...] = ("a", "b")) -> Iterator[Cluster]:
    """Start one chat-server per name over `database_url` (one after another, so that the first creates the schema),
    then HAProxy in front of them; stop everything afterwards."""
    # HAProxy connects from 127.0.0.1 and says who its client is in X-Forwarded-For (`option forwardfor`): the hosts
    # trust that, so that rate limits and connection shares count each client, not the proxy.
    options = ("--forwarded-allow-ips", "127.0.0.1", *options)
    with contextlib.ExitStack() as stack:
        backends = {name: stack.enter_context(live_server(*options, "--database", database_url)) for name in names}
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chat-cluster-")))
        port, admin_socket = _free_port(), workdir / "admin.sock"
        config = workdir / "haproxy.cfg"
        config.write_text(_haproxy_config(port, admin_socket, backends))
        log_path = workdir / "haproxy.log"
        with log_path.open("wb") as log_file:
            haproxy = subprocess.Popen([str(HAPROXY), "-db", "-f", str(config)], stdout=log_file, stderr=log_file)
        stack.callback(_stop, haproxy)
        cluster = Cluster(f"http://127.0.0.1:{port}", backends, admin_socket, database_url)
        _wait_until_serving(cluster, haproxy, log_path)
        yield cluster


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
