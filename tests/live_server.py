"""Run the real `chat-server` command on a free loopback port with a fresh SQLite file, for out-of-process tests."""

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(process: subprocess.Popen, server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chat-server exited with {process.returncode} before answering:\n{server.log()}")
        try:
            if httpx.get(server.api_url + "/openapi.json", timeout=1, verify=False).status_code == 200:
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
        port = _free_port()
        scheme = "https" if "--ssl-certfile" in options else "http"
        database = Path(workdir) / "chat.db"
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
                yield dataclasses.replace(server, database_path=database, process=process)
            finally:
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
