"""Real-time delivery, measured from outside: event-stream latency and the memory an idle stream costs.

Used by `python load/benchmark.py realtime`. Against a live chat-server this registers users, puts them into chats,
opens many `GET /api/events` streams at once (raw asyncio sockets, one small protocol object per stream, so thousands
fit in one process), then sends messages at a steady rate and records, for every message, when each stream of
each member of its chat received its `message.created`. Latency is the time from the sender reading its 201 to a
stream reading the event, on the streams of the chat's other members. Every stream of every member (the
sender's included) must get each message exactly once: lost and doubled deliveries are counted, not hidden.
"""

import asyncio
import contextlib
import json
import math
import os
import resource
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

PASSWORD = "realtime-bench-password"
OPEN_BATCH = 200  # streams connecting at once (the listen backlog is 2048)
READY_SECONDS = 60.0
SENDER_CONNECTIONS = 8
DRAIN_SECONDS = 3.0  # after the last send, for the last events to arrive
SETTLE_SECONDS = 3.0  # idle streams, before memory is read


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# The server's processes, from /proc.


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn's workers, multiprocessing helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def socket_owners(pids: list[int], server_port: int) -> dict[int, int]:
    """Which server process holds each accepted connection: {client port: pid}, from /proc/PID/fd and /proc/net/tcp."""
    inode_pid = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inode_pid[int(target[8:-1])] = pid
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                columns = row.split()
                local_port = int(columns[1].rsplit(":", 1)[1], 16)
                remote_port = int(columns[2].rsplit(":", 1)[1], 16)
                inode = int(columns[9])
                if local_port == server_port and inode in inode_pid:
                    owners[remote_port] = inode_pid[inode]
    return owners


# The clients.


@dataclass
class Member:
    user_id: int
    cookie: str
    chat: int = 0
    streams: list["Stream"] = field(default_factory=list)


class Stream(asyncio.Protocol):
    """One GET /api/events stream: HTTP/1.1 chunked body, Server-Sent Events inside, timestamps on arrival."""

    def __init__(self, run: "Run", member: Member, host: str):
        self.run, self.member = run, member
        self.request = (
            f"GET /api/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCookie: {member.cookie}\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.head = bytearray()
        self.headers_done = False
        self.raw = bytearray()
        self.data_left = 0  # bytes of the current chunk still to come
        self.skip = 0  # the CRLF after a chunk
        self.text = bytearray()
        self.fields: dict[bytes, bytes] = {}
        self.closing = False
        self.port = 0

    def connection_made(self, transport):
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        transport.write(self.request)

    def connection_lost(self, exc):
        if not self.closing:
            self.run.problems.append(f"stream of user {self.member.user_id} closed: {exc or 'by the server'}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"stream closed before ready: {bytes(self.head[:200])!r}"))

    def close(self):
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes):
        now = time.perf_counter()
        if not self.headers_done:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head[: self.head.find(b"\r\n")]
            if b" 200 " not in status + b" ":
                self.ready.set_exception(ConnectionError(f"stream refused: {bytes(self.head[:300])!r}"))
                self.close()
                return
            self.headers_done = True
            data = bytes(self.head[end + 4 :])
            self.head.clear()
        self.raw += data
        while self.raw:
            if self.data_left:
                piece = self.raw[: self.data_left]
                del self.raw[: len(piece)]
                self.data_left -= len(piece)
                self.sse(piece, now)
            elif self.skip:
                taken = min(self.skip, len(self.raw))
                del self.raw[:taken]
                self.skip -= taken
            else:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.raw[:end]).split(b";")[0], 16)
                del self.raw[: end + 2]
                if size == 0:
                    self.run.problems.append(f"stream of user {self.member.user_id} ended")
                    return
                self.data_left, self.skip = size, 2

    def sse(self, piece: bytes, now: float):
        self.text += piece
        while (end := self.text.find(b"\n")) >= 0:
            line = bytes(self.text[:end]).rstrip(b"\r")
            del self.text[: end + 1]
            if not line:
                if self.fields:
                    self.dispatch(self.fields, now)
                self.fields = {}
            elif not line.startswith(b":"):
                name, _, value = line.partition(b":")
                self.fields[name] = value.removeprefix(b" ")

    def dispatch(self, fields: dict[bytes, bytes], now: float):
        kind = fields.get(b"event")
        if kind == b"message.created":
            message_id = json.loads(fields[b"data"])["message"]["id"]
            self.run.arrivals.setdefault(message_id, []).append((self, now))
        elif kind == b"ready" and not self.ready.done():
            self.ready.set_result(int(fields[b"id"]))


class Sender:
    """A keep-alive HTTP/1.1 connection that posts forms and reads the JSON answer."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> int:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.writer.get_extra_info("sockname")[1]

    async def post(self, path: str, form: str, cookie: str) -> tuple[int, bytes, float]:
        """Send; return the status, the body and the moment the whole answer was read."""
        body = form.encode()
        self.writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nCookie: {cookie}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer = await self.reader.readexactly(length)
        return status, answer, time.perf_counter()

    def close(self):
        if self.writer is not None:
            self.writer.close()


@dataclass
class Sent:
    chat: int
    sender: Member
    started: float
    acked: float
    connection_port: int


@dataclass
class Run:
    members: list[Member]
    chats: dict[int, list[Member]]
    arrivals: dict[int, list[tuple[Stream, float]]] = field(default_factory=dict)
    sent: dict[int, Sent] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    send_errors: int = 0
    owners: dict[int, int] = field(default_factory=dict)  # client port: server pid, with several workers
    sender_ports: set[int] = field(default_factory=set)


# Setup through the API.


def register_and_group(url: str, users: int, chat_size: int, tag: str) -> tuple[list[Member], dict[int, list[Member]]]:
    """Register `users` users and put them into chats of `chat_size` members each (every user in one chat)."""
    members = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for number in range(users):
            name = f"rt-{tag}-{number}"
            response = client.post(
                "/api/user/0", data={"name": name, "password": PASSWORD, "email": f"{name}@bench.example"}
            )
            response.raise_for_status()
            cookie = f"user_id={response.cookies['user_id']}; token={response.cookies['token']}"
            members.append(Member(response.json()["id"], cookie))
            client.cookies.clear()
        chats = {}
        for start in range(0, users, chat_size):
            group = members[start : start + chat_size]
            owner = group[0]
            response = client.post("/api/chats", data={"title": f"rt {start}"}, headers={"Cookie": owner.cookie})
            response.raise_for_status()
            chat = response.json()["id"]
            for member in group[1:]:
                added = client.post(
                    f"/api/chats/{chat}/members", data={"user_id": member.user_id}, headers={"Cookie": owner.cookie}
                )
                added.raise_for_status()
            for member in group:
                member.chat = chat
            chats[chat] = group
    return members, chats


def stream_plan(members: list[Member], per_member: int, limit: int) -> list[Member]:
    """Whose streams to open: `per_member` for each member, `limit` in all."""
    return [member for _ in range(per_member) for member in members][:limit]


async def open_streams(run: Run, url: str, wanted: list[Member]) -> list[Stream]:
    """Open a stream for each of `wanted`, OPEN_BATCH at a time; wait for every ready event."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    streams = []
    for start in range(0, len(wanted), OPEN_BATCH):
        batch = []
        for member in wanted[start : start + OPEN_BATCH]:
            _, stream = await loop.create_connection(
                lambda m=member: Stream(run, m, parts.netloc), parts.hostname, parts.port
            )
            member.streams.append(stream)
            batch.append(stream)
        async with asyncio.timeout(READY_SECONDS):
            await asyncio.gather(*(stream.ready for stream in batch))
        streams += batch
    return streams


def close_streams(run: Run) -> None:
    for member in run.members:
        for stream in member.streams:
            stream.close()
        member.streams.clear()


async def owner_of(run: Run, server_pids: list[int], server_port: int, port: int) -> int | None:
    """The server process that accepted the connection from `port` (accepting may take a moment)."""
    run.owners.pop(port, None)  # a port of a connection closed before may be in use again
    deadline = time.monotonic() + 5
    while port not in run.owners and time.monotonic() < deadline:
        run.owners.update(socket_owners(server_pids, server_port))
        if port not in run.owners:
            await asyncio.sleep(0.02)
    return run.owners.get(port)


async def send_steadily(
    run: Run, url: str, rate: float, duration: float, tag: str, server_pids: list[int] | None = None, workers: int = 1
) -> list[float]:
    """Send `rate` messages a second for `duration` seconds, round-robin over the chats and their members.

    Returns each send's request time (ms). The schedule is absolute: a slow answer does not slow the rate,
    up to SENDER_CONNECTIONS sends in flight. With `server_pids` of several workers, the sending connections
    are spread evenly over the workers (the kernel hands a new connection to whichever worker accepts first,
    which is often the same one), and run.owners notes which process holds each.
    """
    parts = urlsplit(url)
    pool: asyncio.Queue[tuple[Sender, int]] = asyncio.Queue()
    senders = []
    per_worker: dict[int | None, int] = {}
    for _attempt in range(SENDER_CONNECTIONS * 50):
        if len(senders) == SENDER_CONNECTIONS:
            break
        sender = Sender(parts.hostname, parts.port)
        port = await sender.connect()
        if server_pids:
            owner = await owner_of(run, server_pids, parts.port, port)
            if per_worker.get(owner, 0) >= math.ceil(SENDER_CONNECTIONS / workers):
                sender.close()
                continue
            per_worker[owner] = per_worker.get(owner, 0) + 1
            run.sender_ports.add(port)
        senders.append((sender, port))
        pool.put_nowait((sender, port))
    chats = list(run.chats.items())
    request_ms: list[float] = []

    async def one(number: int):
        chat, group = chats[number % len(chats)]
        author = group[(number // len(chats)) % len(group)]
        sender, port = await pool.get()
        try:
            started = time.perf_counter()
            status, body, acked = await sender.post(f"/api/chats/{chat}", f"content=rt+{tag}+{number}", author.cookie)
            if status != 201:
                run.send_errors += 1
                run.problems.append(f"send answered {status}: {body[:200]!r}")
                return
            request_ms.append((acked - started) * 1000)
            run.sent[json.loads(body)["id"]] = Sent(chat, author, started, acked, port)
        finally:
            pool.put_nowait((sender, port))

    total = int(rate * duration)
    began = time.perf_counter()
    tasks = []
    for number in range(total):
        delay = began + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)
    for sender, _port in senders:
        sender.close()
    return request_ms


@dataclass
class Result:
    label: str
    streams: int
    workers: int
    database: str
    per_member: int
    chat_size: int
    rate: float
    messages: int = 0
    deliveries: int = 0
    lost: int = 0
    doubled: int = 0
    early: int = 0  # arrivals read before the sender read its 201 (counted as 0 ms)
    latencies: list[float] = field(default_factory=list)  # ms, from the 201, other members' streams
    from_request: list[float] = field(default_factory=list)  # ms, from writing the send
    cross: list[float] = field(default_factory=list)  # ms, stream on another worker than the send
    same: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)  # ms, first to last stream of a message to read it
    rss_before: int = 0
    rss_half: int = 0
    rss_after: int = 0
    server_cpu: float = 0.0  # share of one core over the send phase
    client_cpu: float = 0.0
    streams_per_worker: dict[int, int] = field(default_factory=dict)
    senders_per_worker: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def per_stream_kib(self) -> float:
        """RSS growth per stream, all streams against none."""
        return (self.rss_after - self.rss_before) / self.streams / 1024

    @property
    def marginal_kib(self) -> float:
        """RSS growth per stream of the second half of the streams."""
        return (self.rss_after - self.rss_half) / (self.streams - self.streams // 2) / 1024


def analyse(run: Run, result: Result, owners: dict[int, int]) -> None:
    for message_id, sent in run.sent.items():
        got: dict[Stream, list[float]] = {}
        for stream, moment in run.arrivals.get(message_id, ()):
            got.setdefault(stream, []).append(moment)
        seen = dict(got)
        for member in run.chats[sent.chat]:
            for stream in member.streams:
                moments = got.pop(stream, None)
                if not moments:
                    result.lost += 1
                    continue
                result.deliveries += 1
                if len(moments) > 1:
                    result.doubled += len(moments) - 1
                if member is sent.sender:
                    continue
                latency = (moments[0] - sent.acked) * 1000
                if latency < 0:
                    result.early += 1
                result.latencies.append(max(0.0, latency))
                result.from_request.append((moments[0] - sent.started) * 1000)
                if owners:
                    stream_worker, send_worker = owners.get(stream.port), owners.get(sent.connection_port)
                    if stream_worker is not None and send_worker is not None:
                        (result.same if stream_worker == send_worker else result.cross).append(max(0.0, latency))
        firsts = [moments[0] for moments in seen.values()]
        if len(firsts) > 1:
            result.spread.append((max(firsts) - min(firsts)) * 1000)
        for stream in got:  # arrived where it should not have
            result.problems.append(f"message {message_id} reached user {stream.member.user_id}, not in its chat")
    result.messages = len(run.sent)


async def measure(
    url: str, server_pid: int, result: Result, users: int, duration: float, tag: str, warmup: bool = True
) -> Result:
    """One scenario against a running server: setup, memory of idle streams, then latency under steady sends."""
    members, chats = await asyncio.to_thread(register_and_group, url, users, result.chat_size, tag)
    run = Run(members, chats)
    if warmup:  # the first streams and sends load code and fill caches; keep that out of the numbers
        await open_streams(run, url, members[:50])
        await send_steadily(run, url, result.rate, 2, f"{tag}w")
        await asyncio.sleep(DRAIN_SECONDS)
        close_streams(run)
        run.sent.clear()
        run.arrivals.clear()
        await asyncio.sleep(1)
    # Memory: RSS idle, with half the streams open, with all; the second half's growth is the marginal cost, free
    # of one-time costs and of memory the warm-up freed.
    plan = stream_plan(members, result.per_member, result.streams)
    pids = process_tree(server_pid)
    result.rss_before = rss_bytes(pids)
    await open_streams(run, url, plan[: len(plan) // 2])
    await asyncio.sleep(SETTLE_SECONDS)
    result.rss_half = rss_bytes(process_tree(server_pid))
    await open_streams(run, url, plan[len(plan) // 2 :])
    await asyncio.sleep(SETTLE_SECONDS)
    pids = process_tree(server_pid)
    result.rss_after = rss_bytes(pids)
    workers = pids if result.workers > 1 else None
    if workers:
        run.owners.update(socket_owners(workers, urlsplit(url).port))
        for stream in (stream for member in members for stream in member.streams):
            owner = run.owners.get(stream.port, 0)
            result.streams_per_worker[owner] = result.streams_per_worker.get(owner, 0) + 1
    cpu_before, wall_before, client_before = cpu_seconds(pids), time.perf_counter(), time.process_time()
    result.request_ms = await send_steadily(run, url, result.rate, duration, tag, workers, result.workers)
    wall = time.perf_counter() - wall_before
    result.server_cpu = (cpu_seconds(pids) - cpu_before) / wall
    result.client_cpu = (time.process_time() - client_before) / wall
    await asyncio.sleep(DRAIN_SECONDS)
    for port in run.sender_ports:
        owner = run.owners.get(port, 0)
        result.senders_per_worker[owner] = result.senders_per_worker.get(owner, 0) + 1
    analyse(run, result, run.owners)
    result.problems += run.problems
    close_streams(run)
    return result


def raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )
