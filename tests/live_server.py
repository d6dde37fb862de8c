"""Run the real `chat-server` command on a free loopback port with a fresh SQLite file, for out-of-process tests."""

import contextlib
import dataclasses
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
# Tries at starting a server, each on another port, when the one chosen was taken before the server could bind it.
START_ATTEMPTS = 3
# Ports for the servers tests start come from below the kernel's ephemeral range. bind(0) hands out a port from that
# range, where every outgoing connection takes its local port too, and the port is free again between that probe and
# the server's own bind, so another pytest-xdist worker's server or any client's connection could take it meanwhile.
# Below the range only the ports chosen here are used, and each xdist worker (gw0, gw1, ... of
# PYTEST_XDIST_WORKER_COUNT) chooses from a slice of its own.
LOWEST_PORT = 20000
# Set to a running server's URL (`tox -e cluster` sets HAProxy's) to run the black-box tests against it instead.
SERVER_URL_VARIABLE = "CHAT_TEST_SERVER_URL"


@dataclass(frozen=True)
class LiveServer:
    url: str
    log_path: Path | None = None
    database_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def log(self) -> str:
        if self.log_path is None:
            raise RuntimeError(f"the server at {self.url} was not started here, so its log is not here")
        return self.log_path.read_text(errors="replace")

    @property
    def started_here(self) -> bool:
        return self.process is not None


def chat_server_command() -> list[str]:
    """The console script installed next to this interpreter, so a tox env runs its own copy of the project."""
    script = shutil.which("chat-server", path=str(Path(sys.executable).parent))
    if script is None:
        raise RuntimeError(f"chat-server is not installed next to {sys.executable}; pip install the project first")
    return [script]


def _port_slice() -> range:
    """This process's ports: its xdist worker's share of LOWEST_PORT up to the kernel's ephemeral range."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default; other systems start theirs higher
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    size = max(ephemeral - LOWEST_PORT, 0) // workers
    start = LOWEST_PORT + (int(worker) if worker.isdigit() else 0) * size
    return range(start, start + size)


_PORTS = _port_slice()
_ports_lock = threading.Lock()
_next_port = random.randrange(len(_PORTS)) if _PORTS else 0  # another pytest run on the machine likely starts elsewhere


def _listenable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port will do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    """A loopback port nothing listens on, from this process's slice (taken in turn, so not soon handed out again);
    from the kernel (bind to port 0) where there is no such slice."""
    global _next_port
    with _ports_lock:
        for _ in range(len(_PORTS) if len(_PORTS) >= 100 else 0):
            port = _PORTS[_next_port]
            _next_port = (_next_port + 1) % len(_PORTS)
            if _listenable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_was_taken(log: str) -> bool:
    """Whether a server's log says it could not bind its port (uvicorn: "[Errno 98] ... address already in use")."""
    return "address already in use" in log.lower()


def _wait_until_up(process: subprocess.Popen, server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chat-server exited with {process.returncode} before answering:\n{server.log()}")
        try:
            if httpx.get(server.api_url + "/health", timeout=1, verify=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"chat-server did not answer within {START_TIMEOUT_SECONDS} s:\n{server.log()}")


@contextlib.contextmanager
def live_server(*options: str) -> Iterator[LiveServer]:
    """Start chat-server with `--password-profile cheapest` (and any other options), yield once it answers, and stop
    it afterwards. With `--ssl-certfile` the server and its URL are HTTPS."""
    with tempfile.TemporaryDirectory(prefix="chat-live-") as workdir:
        scheme = "https" if "--ssl-certfile" in options else "http"
        database = Path(workdir) / "chat.db"
        for attempt in range(1, START_ATTEMPTS + 1):
            port = _free_port()
            server = LiveServer(url=f"{scheme}://127.0.0.1:{port}", log_path=Path(workdir) / "server.log")
            command = [
                *chat_server_command(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database",
                f"sqlite:///{database}",
                "--password-profile",
                "cheapest",
                *options,
            ]
            with server.log_path.open("wb") as log_file:
                process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
            try:
                _wait_until_up(process, server)
            except RuntimeError:
                _stop(process)
                if attempt < START_ATTEMPTS and port_was_taken(server.log()):
                    continue  # something else bound the port first: start again on another
                raise
            break
        try:
            yield dataclasses.replace(server, database_path=database, process=process)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def remote_server_url() -> str | None:
    return os.environ.get(SERVER_URL_VARIABLE, "").rstrip("/") or None


@contextlib.contextmanager
def live_or_remote_server(*options: str) -> Iterator[LiveServer]:
    """The server at CHAT_TEST_SERVER_URL when that is set (it must already run with the equivalent of `options`),
    otherwise a fresh live_server(*options)."""
    if url := remote_server_url():
        yield LiveServer(url=url)
        return
    with live_server(*options) as running:
        yield running
