"""Durability: every message the real `chat-server` acknowledged survives SIGKILL, exactly once, in a sound database.

Eight writer threads send messages with unique contents (`w3-n17`) over HTTP while the server is killed with SIGKILL
three times and restarted on the same SQLite file. A send that got 201 is acknowledged and must be stored exactly once,
under the id it was given; a send whose answer was lost in the kill may or may not be stored, and is never retried
with the same content, so a stored content can only ever come from one send. After each kill, before the restart, the
crashed database is read directly (read-only, so that the restarted server does its own WAL recovery); at the end, the
messages are read back through the API, paging both ways, and directly with sqlite3.
"""

import collections
import itertools
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.live_server import LiveServer, _free_port, _wait_until_up, chat_server_command

WRITERS = 8
CHATS = 2
KILLS = 3
MIN_SECONDS_PER_RUN = 1.0  # of sending between one start of the server and the next kill
MIN_ACKS_PER_RUN = 100  # acknowledged sends between one start of the server and the next kill
PROGRESS_TIMEOUT_SECONDS = 20
REQUEST_TIMEOUT_SECONDS = 10
RETRY_PAUSE_SECONDS = 0.02
PASSWORD = "long enough"


class RestartableServer:
    """`chat-server` on one SQLite file that outlives the process: start, SIGKILL, start again."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.database = workdir / "chat.db"
        self.port = _free_port()
        self.url = ""
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        try:
            self._start_on(self.port)
        except RuntimeError:
            # Someone else took the port while the server was down; the writers follow `self.url` to a new one.
            self.port = _free_port()
            self._start_on(self.port)

    def _start_on(self, port: int) -> None:
        self.starts += 1
        server = LiveServer(url=f"http://127.0.0.1:{port}", log_path=self.workdir / f"server-{self.starts}.log")
        command = [
            *chat_server_command(),
            *("--host", "127.0.0.1", "--port", str(port), "--database", f"sqlite:///{self.database}"),
            *("--password-profile", "cheapest", "--register-rate", "off", "--no-access-log"),
            *("--default-who-can-add-me", "anyone"),
        ]
        with server.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            _wait_until_up(self.process, server)
        except BaseException:
            self.kill()
            raise
        self.url = server.url

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no checkpoint, no closing of the database; wait until the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- server-{n}.log\n" + (self.workdir / f"server-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.workdir / f"server-{n}.log").exists()
        )


@dataclass(frozen=True)
class Ack:
    id: int
    chat_id: int
    sender_id: int
    content: str
    run: int  # which start of the server acknowledged it


@dataclass
class Writer:
    """One thread, one user, one chat: send `w<index>-n<k>` for k = 0, 1, 2, ... until told to stop."""

    index: int
    user_id: int
    chat_id: int
    cookies: dict
    server: RestartableServer
    stop: threading.Event
    acks: list[Ack] = field(default_factory=list)
    lost: list[tuple[int, str]] = field(default_factory=list)  # (run, content): sent, but the answer never came
    refused: int = 0  # no connection: the server was down, so the send never reached it
    unexpected: list[str] = field(default_factory=list)  # any answer other than 201
    attempts: int = 0  # contents w<index>-n0 .. n<attempts - 1> have been sent or are being sent
    in_flight: bool = False

    def attempted(self) -> set[str]:
        return {f"w{self.index}-n{n}" for n in range(self.attempts)}

    def run(self) -> None:
        with httpx.Client(cookies=self.cookies, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                content, url, run = f"w{self.index}-n{n}", self.server.url, self.server.starts
                self.attempts, self.in_flight = n + 1, True
                try:
                    response = client.post(f"{url}/api/chats/{self.chat_id}", data={"content": content})
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    self.refused += 1
                    time.sleep(RETRY_PAUSE_SECONDS)
                    continue
                except httpx.TransportError:
                    # Killed mid-request: the message may or may not be stored. The next send has new content.
                    self.lost.append((run, content))
                    time.sleep(RETRY_PAUSE_SECONDS)
                    continue
                finally:
                    self.in_flight = False
                if response.status_code == 201:
                    self.acks.append(Ack(response.json()["id"], self.chat_id, self.user_id, content, run))
                else:
                    self.unexpected.append(f"{content}: {response.status_code} {response.text}")


def set_up_users_and_chats(url: str) -> tuple[list[tuple[int, dict]], list[int]]:
    """WRITERS users, each with its session cookies, and CHATS chats that all of them are members of."""
    users = []
    for n in range(WRITERS):
        with httpx.Client(base_url=url) as client:
            form = {"name": f"writer{n}", "password": PASSWORD, "email": f"writer{n}@example.com"}
            registered = client.post("/api/user/0", data=form)
            assert registered.status_code == 201, registered.text
            users.append((registered.json()["id"], dict(client.cookies)))
    with httpx.Client(base_url=url, cookies=users[0][1]) as owner:
        chat_ids = []
        for n in range(CHATS):
            created = owner.post("/api/chats", data={"title": f"durability {n}"})
            assert created.status_code == 201, created.text
            chat_ids.append(created.json()["id"])
            for user_id, _ in users[1:]:
                added = owner.post(f"/api/chats/{chat_ids[-1]}/members", data={"user_id": user_id})
                assert added.status_code == 201, added.text
    return users, chat_ids


def wait_for_progress(writers: list[Writer], server: RestartableServer) -> None:
    """Until this run of the server has acknowledged MIN_ACKS_PER_RUN sends and MIN_SECONDS_PER_RUN have passed."""
    started = time.monotonic()
    while True:
        acked = sum(1 for writer in writers for ack in writer.acks if ack.run == server.starts)
        elapsed = time.monotonic() - started
        if acked >= MIN_ACKS_PER_RUN and elapsed >= MIN_SECONDS_PER_RUN:
            return
        assert elapsed < PROGRESS_TIMEOUT_SECONDS, f"only {acked} sends acknowledged:\n{server.logs()}"
        assert server.process.poll() is None, f"chat-server exited by itself:\n{server.logs()}"
        time.sleep(0.05)


def read_database(path: Path) -> tuple[list, list, list[tuple[int, int, int, str]]]:
    """integrity_check, foreign_key_check and every message, read directly and read-only: a read-only connection runs
    no checkpoint and leaves the WAL in place, so what the next server start recovers is what the crash left."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchall()
        foreign_keys = connection.execute("PRAGMA foreign_key_check").fetchall()
        messages = connection.execute("SELECT id, chat_id, sender_id, content FROM message ORDER BY id").fetchall()
    finally:
        connection.close()
    return integrity, foreign_keys, messages


def read_chat_through_api(client: httpx.Client, chat_id: int) -> list[tuple[int, int, int, str]]:
    """All of a chat's messages, paged back with `before` and forward with `after`, 1000 at a time; both must agree."""
    backward, before = [], None
    while True:
        params = {"limit": 1000} if before is None else {"limit": 1000, "before": before}
        response = client.get(f"/api/chats/{chat_id}", params=params)
        assert response.status_code == 200, response.text
        page = response.json()["messages"]
        if not page:
            break
        backward = page + backward
        before = page[0]["id"]
    forward, after = [], 0
    while True:
        response = client.get(f"/api/chats/{chat_id}", params={"limit": 1000, "after": after})
        assert response.status_code == 200, response.text
        page = response.json()["messages"]
        if not page:
            break
        forward += page
        after = page[-1]["id"]
    assert forward == backward, "paging forward and paging back disagree"
    return [(m["id"], chat_id, m["sender_id"], m["content"]) for m in forward]


def assert_acknowledged_exactly_once(
    messages: list[tuple[int, int, int, str]], acks: list[Ack], attempted: set[str], where: str
) -> None:
    ids = collections.Counter(message_id for message_id, *_ in messages)
    assert [i for i, count in ids.items() if count > 1] == [], f"{where}: ids stored more than once"
    contents = collections.Counter(content for *_, content in messages)
    assert [c for c, count in contents.items() if count > 1] == [], f"{where}: contents stored more than once"
    assert sorted(set(contents) - attempted) == [], f"{where}: messages that no writer sent"
    stored = {message_id: (chat_id, sender_id, content) for message_id, chat_id, sender_id, content in messages}
    missing = [ack for ack in acks if stored.get(ack.id) != (ack.chat_id, ack.sender_id, ack.content)]
    assert missing == [], f"{where}: {len(missing)} of {len(acks)} acknowledged messages are missing or changed"


def test_acknowledged_messages_survive_sigkill_exactly_once(tmp_path):
    began = time.monotonic()
    server = RestartableServer(tmp_path)
    stop = threading.Event()
    writers: list[Writer] = []
    threads: list[threading.Thread] = []
    try:
        server.start()
        users, chat_ids = set_up_users_and_chats(server.url)
        writers = [
            Writer(n, user_id, chat_ids[n % CHATS], cookies, server, stop) for n, (user_id, cookies) in enumerate(users)
        ]
        threads = [threading.Thread(target=writer.run, name=f"writer-{writer.index}") for writer in writers]
        for thread in threads:
            thread.start()

        for kill in range(1, KILLS + 1):
            wait_for_progress(writers, server)
            in_flight = sum(writer.in_flight for writer in writers)
            server.kill()
            # Every acknowledgement so far came from the process that is now dead; answers still in transit are
            # checked at the end.
            acks = [ack for writer in writers for ack in writer.acks]
            attempted = set().union(*(writer.attempted() for writer in writers))
            integrity, foreign_keys, stored = read_database(server.database)
            assert integrity == [("ok",)], f"after kill {kill}: {integrity}"
            assert foreign_keys == [], f"after kill {kill}: {foreign_keys}"
            assert_acknowledged_exactly_once(stored, acks, attempted, f"after kill {kill}")
            print(
                f"kill {kill}: {len(acks)} acknowledged so far, {len(stored)} stored, "
                f"{in_flight} of {WRITERS} writers in flight at the kill"
            )
            server.start()

        wait_for_progress(writers, server)
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_SECONDS * 2)
        assert not any(thread.is_alive() for thread in threads), "a writer did not stop"

        acks = [ack for writer in writers for ack in writer.acks]
        attempted = set().union(*(writer.attempted() for writer in writers))
        unexpected = [answer for writer in writers for answer in writer.unexpected]
        assert unexpected == [], f"sends answered with something other than 201 or a dropped connection: {unexpected}"

        with httpx.Client(base_url=server.url, cookies=users[0][1], timeout=REQUEST_TIMEOUT_SECONDS) as reader:
            through_api = [message for chat_id in chat_ids for message in read_chat_through_api(reader, chat_id)]
        assert_acknowledged_exactly_once(through_api, acks, attempted, "through the API")
        server.stop()

        integrity, foreign_keys, stored = read_database(server.database)
        assert integrity == [("ok",)], integrity
        assert foreign_keys == [], foreign_keys
        assert_acknowledged_exactly_once(stored, acks, attempted, "in the database file")
        assert sorted(stored) == sorted(through_api), "the API and the database file disagree"

        lost = [content for writer in writers for _, content in writer.lost]
        lost_but_stored = len(set(lost) & {content for *_, content in stored})
        print(
            f"{len(acks)} acknowledged sends, all stored once; {len(stored)} messages stored; "
            f"{len(lost)} sends lost their answer in a kill ({lost_but_stored} of them stored), "
            f"per kill: {[sum(1 for w in writers for run, _ in w.lost if run == n) for n in range(1, KILLS + 1)]}; "
            f"{sum(w.refused for w in writers)} connections refused while the server was down; "
            f"{time.monotonic() - began:.1f} s"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_SECONDS * 2)
        server.kill()
