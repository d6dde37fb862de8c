"""Real-time delivery, measured from outside: event-stream latency, the memory an idle stream costs, typing and
presence.

Used by `python load/benchmark.py realtime`. Every stream is a `GET /api/events` on a raw asyncio socket, one small
protocol object per stream, so thousands fit in one process; each event is timestamped as its bytes are read.

`measure` registers users, puts them into chats of a few members, opens the streams, then sends messages at a
steady rate and records, for every message, when each stream of each member of its chat received its
`message.created`. Latency is the time from the sender reading its 201 to a stream reading the event, on the
streams of the chat's other members. Every stream of every member (the sender's included) must get each message
exactly once: lost and doubled deliveries are counted, not hidden.

`measure_scale` (issue 25, streams at scale) puts every stream's user into one fan-out chat, each user's streams
coming from a loopback address of its own (127.1.x.y, as people's come from theirs), and measures in turn:

- memory: the server's RSS growth per idle stream, over the second half of the streams (and over all of them),
  once the server and this client are quiet again after each half (users coming online send presence events to
  everyone in the fan-out chat);
- fan-out: messages to that chat at a steady rate, from each send's 201 to the `message.created` on every stream;
- typing: in a chat of the first --typing-chat users, each member says `start`, then `stop`, then `start`, ...
  every 5 s (the re-send interval the server declares, so the 2-second throttle drops none), and the latency runs
  from the 204 of `POST /api/chats/{id}/typing` to the `typing` event on every stream of the other members (and
  from writing the request: the event often beats the 204); lost, extra, wrong-way and misdelivered typing events
  are counted;
- churn: separate users, each in a small chat with one of the streams' users, connect and disconnect --churn times
  a minute (each holds its stream CHURN_HOLD_SECONDS, and goes offline after the presence grace), with the idle
  streams open; the server's CPU over the churn window against the same streams idle, and the presence events the
  streams read meanwhile.

Typing and presence events carry no `id:`. The parser treats them like any other message (it keeps no last id),
and the accounting reads ids only from `ready` and from the data of `message.created`, so they disturb nothing;
one that does carry an id is reported as a problem.

One process may open only so many files, so streams beyond CLIENT_STREAMS are held by helper processes that report
what their streams read; `time.perf_counter` is the system's monotonic clock, the same in every process.
"""

import asyncio
import collections
import contextlib
import json
import math
import multiprocessing
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import httpx

PASSWORD = "realtime-bench-password"
OPEN_BATCH = 200  # streams connecting at once (the listen backlog is 2048)
READY_SECONDS = 60.0
SENDER_CONNECTIONS = 8
SENDER_FRESH_SECONDS = 20.0  # a sending connection not yet used by then is replaced (see connect_senders)
DRAIN_SECONDS = 3.0  # after the last send, for the last events to arrive
SETTLE_SECONDS = 3.0  # idle streams, before memory is read
# Streams at scale (issue 25).
CLIENT_STREAMS = 10_000  # streams one client process holds; helper processes hold the rest (the open-file limit)
SETUP_CONNECTIONS = 8  # connections registering users and adding members
TYPING_EVERY_SECONDS = 5.0  # each typist's next start or stop: the re-send interval the server declares
CHURN_HOLD_SECONDS = 10.0  # how long a churning user keeps its stream open
QUIET_SHARE = 0.10  # the server, and the client, count as quiet below this share of a core over a second
QUIET_LIMIT_SECONDS = 180.0


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


End = tuple[str, int]  # a connection's client end: address and port (streams may come from many addresses)


def proc_net_address(text: str) -> End:
    """An address:port of /proc/net/tcp (hex, the address in host byte order) or tcp6, IPv4-mapped ones as IPv4."""
    address, port = text.rsplit(":", 1)
    raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
    host = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw).removeprefix("::ffff:")
    return host, int(port, 16)


def socket_owners(pids: list[int], server_port: int) -> dict[End, int]:
    """Which server process holds each accepted connection: {client end: pid}, from /proc/PID/fd and /proc/net/tcp."""
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
                inode = int(columns[9])
                if local_port == server_port and inode in inode_pid:
                    owners[proc_net_address(columns[2])] = inode_pid[inode]
    return owners


# The clients.


@dataclass
class Member:
    user_id: int
    cookie: str
    chat: int = 0
    streams: list["Stream | FarStream"] = field(default_factory=list)
    address: str | None = None  # the loopback address its streams come from; None: the system's choice (127.0.0.1)


def loopback(number: int, block: int) -> str:
    """A client address of its own for user `number`, in 127.`block`.0.0/16 (Linux answers all of 127/8)."""
    return f"127.{block}.{number // 250 % 256}.{number % 250 + 1}"


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
        self.end: End = ("", 0)
        self.key = -1  # in a helper process: the parent's name for this stream

    def connection_made(self, transport):
        self.transport = transport
        self.end = tuple(transport.get_extra_info("sockname")[:2])
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
            self.run.arrivals.setdefault(self.run.message_id(fields[b"data"]), []).append((self, now))
        elif kind in (b"typing", b"presence"):
            if b"id" in fields:
                self.run.problems.append(f"a {kind.decode()} event with an id, {fields[b'id'].decode()!r}")
            if kind == b"typing":
                typing = json.loads(fields[b"data"])
                self.run.typing_arrivals.append((self, typing["user_id"], typing["chat_id"], typing["active"], now))
            else:
                self.run.presence_seen[presence_state(fields[b"data"])] += 1
        elif kind == b"ready" and not self.ready.done():
            self.ready.set_result(int(fields[b"id"]))


def presence_state(data: bytes) -> str:
    """The `state` of a presence event's data, without parsing it all: a stream may read thousands at once."""
    start = data.find(b'"state":"') + 9
    return data[start : data.find(b'"', start)].decode() if start >= 9 else json.loads(data)["state"]


class FarStream:
    """A stream a helper process holds: what the analysis needs of it here."""

    __slots__ = ("end", "member")

    def __init__(self, member: "Member", end: End):
        self.member, self.end = member, end

    def close(self):
        """Its helper closes it (close_all)."""


class Sender:
    """A keep-alive HTTP/1.1 connection that posts forms and reads the JSON answer; it connects again when the
    server has closed it (an idle connection, after the server's keep-alive timeout)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.end: End = ("", 0)

    async def connect(self) -> End:
        self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.end = tuple(self.writer.get_extra_info("sockname")[:2])
        return self.end

    async def post(self, path: str, form: str, cookie: str) -> tuple[int, bytes, float]:
        """Send; return the status, the body and the moment the whole answer was read."""
        status, _head, answer, acked = await self.request(path, form, cookie)
        return status, answer, acked

    async def request(self, path: str, form: str, cookie: str) -> tuple[int, bytes, bytes, float]:
        """POST a form; return the status, the head, the body and the moment the whole answer was read."""
        if self.reader is None or self.reader.at_eof():
            await self.connect()
        body = form.encode()
        cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""
        self.writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{cookie_line}"
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
        return status, head, answer, time.perf_counter()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


@dataclass
class Sent:
    chat: int
    sender: Member
    started: float
    acked: float
    connection_end: End


@dataclass
class Run:
    members: list[Member]
    chats: dict[int, list[Member]]
    arrivals: dict[int, list[tuple[Stream, float]]] = field(default_factory=dict)
    sent: dict[int, Sent] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    send_errors: int = 0
    owners: dict[End, int] = field(default_factory=dict)  # client end: server pid, with several workers
    sender_ends: set[End] = field(default_factory=set)
    typing_arrivals: list[tuple["Stream | FarStream", int, int, bool, float]] = field(default_factory=list)
    typed: list["Typed"] = field(default_factory=list)
    presence_seen: collections.Counter[str] = field(default_factory=collections.Counter)
    ids: dict[bytes, int] = field(default_factory=dict)  # a message.created's data: its message id
    held: int = 0  # streams open in this process (measure's and measure_scale's, not the churn's)
    holders: list["Holder"] = field(default_factory=list)
    far: dict[int, FarStream] = field(default_factory=dict)  # by key, the streams helper processes hold

    def message_id(self, data: bytes) -> int:
        """Every stream reads the same bytes for a message: parse them once."""
        known = self.ids.get(data)
        if known is None:
            known = self.ids[data] = json.loads(data)["message"]["id"]
        return known


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


async def open_streams(run: Run, url: str, wanted: list[Member]) -> list[Stream | FarStream]:
    """Open a stream for each of `wanted`: in this process up to CLIENT_STREAMS, the rest in helper processes."""
    room = max(0, CLIENT_STREAMS - run.held)
    streams: list[Stream | FarStream] = await open_here(run, url, wanted[:room])
    rest = wanted[room:]
    while rest:
        holder = next((holder for holder in run.holders if holder.count < CLIENT_STREAMS), None)
        if holder is None:
            holder = Holder(url)
            run.holders.append(holder)
        taken, rest = rest[: CLIENT_STREAMS - holder.count], rest[CLIENT_STREAMS - holder.count :]
        keys = range(len(run.far), len(run.far) + len(taken))
        ends = await holder.call(
            "open", [(key, m.user_id, m.cookie, m.address) for key, m in zip(keys, taken, strict=True)]
        )
        holder.count += len(taken)
        for key, member, end in zip(keys, taken, ends, strict=True):
            stream = run.far[key] = FarStream(member, tuple(end))
            member.streams.append(stream)
            streams.append(stream)
    return streams


async def open_here(run: Run, url: str, wanted: list[Member]) -> list[Stream]:
    """Open a stream for each of `wanted` in this process, OPEN_BATCH at a time; wait for every ready event."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    streams = []
    for start in range(0, len(wanted), OPEN_BATCH):
        batch = []
        for member in wanted[start : start + OPEN_BATCH]:
            _, stream = await loop.create_connection(
                lambda m=member: Stream(run, m, parts.netloc),
                parts.hostname,
                parts.port,
                local_addr=(member.address, 0) if member.address else None,
            )
            member.streams.append(stream)
            batch.append(stream)
            run.held += 1
        async with asyncio.timeout(READY_SECONDS):
            await asyncio.gather(*(stream.ready for stream in batch))
        streams += batch
    return streams


def close_streams(run: Run) -> None:
    """Close this process's streams (and forget the helpers' ones: close_all closes those)."""
    for member in run.members:
        for stream in member.streams:
            stream.close()
        member.streams.clear()
    run.held = 0


async def close_all(run: Run) -> None:
    close_streams(run)
    for holder in run.holders:
        await holder.call("close")
        holder.count = 0
    run.far.clear()


# Helper processes, for streams beyond one process's open files.


class Holder:
    """A helper process that holds streams for this one and reports what they read (see `hold`)."""

    def __init__(self, url: str):
        context = multiprocessing.get_context("spawn")  # not fork: this process runs an event loop
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=hold, args=(theirs, url), daemon=True)
        self.process.start()
        theirs.close()
        self.count = 0

    async def call(self, *request):
        self.connection.send(request)
        outcome, answer = await asyncio.to_thread(self.connection.recv)
        if outcome != "ok":
            raise RuntimeError(f"a stream-holding helper process failed: {answer}")
        return answer

    async def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError, RuntimeError):
            await self.call("exit")
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()


def hold(connection, url: str) -> None:
    """A helper process's main: open, report and close streams as its parent asks, until it says `exit`."""
    raise_open_file_limit(CLIENT_STREAMS + 100)
    run_async(_hold(connection, url))


async def _hold(connection, url: str) -> None:
    run = Run([], {})
    while True:
        command, *arguments = await asyncio.to_thread(connection.recv)
        try:
            answer = None
            if command == "open":
                wanted = [Member(user_id, cookie, address=address) for _key, user_id, cookie, address in arguments[0]]
                run.members += wanted
                streams = await open_here(run, url, wanted)
                for (key, *_member), stream in zip(arguments[0], streams, strict=True):
                    stream.key = key
                answer = [stream.end for stream in streams]
            elif command == "collect":
                messages = [
                    (message, stream.key, moment) for message, got in run.arrivals.items() for stream, moment in got
                ]
                typing = [(stream.key, *rest) for stream, *rest in run.typing_arrivals]
                answer = messages, typing, dict(run.presence_seen), run.problems[:]
                run.arrivals.clear()
                run.typing_arrivals.clear()
                run.presence_seen.clear()
                run.problems.clear()
            elif command in ("close", "exit"):
                close_streams(run)
                run.members.clear()
        except Exception as exc:  # the parent raises it
            connection.send(("error", repr(exc)))
        else:
            connection.send(("ok", answer))
        if command == "exit":
            return


async def collect(run: Run) -> None:
    """Bring what the helper processes' streams read into `run`, as if this process had read it."""
    for holder in run.holders:
        messages, typing, presence, problems = await holder.call("collect")
        for message, key, moment in messages:
            run.arrivals.setdefault(message, []).append((run.far[key], moment))
        run.typing_arrivals += [(run.far[key], *rest) for key, *rest in typing]
        run.presence_seen.update(presence)
        run.problems += problems


def client_cpu_seconds(run: Run) -> float:
    """CPU time of this process and its helpers so far."""
    return time.process_time() + cpu_seconds([holder.process.pid for holder in run.holders])


def run_async(coroutine):
    """Run on uvloop when it is installed (uvicorn[standard] brings it): the client should cost less than the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def owner_of(run: Run, server_pids: list[int], server_port: int, end: End) -> int | None:
    """The server process that accepted the connection from `end` (accepting may take a moment)."""
    run.owners.pop(end, None)  # the end of a connection closed before may be in use again
    deadline = time.monotonic() + 5
    while end not in run.owners and time.monotonic() < deadline:
        run.owners.update(socket_owners(server_pids, server_port))
        if end not in run.owners:
            await asyncio.sleep(0.02)
    return run.owners.get(end)


async def send_steadily(
    run: Run, url: str, rate: float, duration: float, tag: str, server_pids: list[int] | None = None, workers: int = 1
) -> list[float]:
    """Send `rate` messages a second for `duration` seconds, round-robin over the chats and their members.

    Returns each send's request time (ms). The schedule is absolute: a slow answer does not slow the rate,
    up to SENDER_CONNECTIONS sends in flight. With `server_pids` of several workers, the sending connections
    are spread evenly over the workers (the kernel hands a new connection to whichever worker accepts first,
    which is often the same one), and run.owners notes which process holds each.
    """
    senders = await connect_senders(run, url, rate, server_pids, workers)
    pool: asyncio.Queue[Sender] = asyncio.Queue()
    for sender in senders:
        pool.put_nowait(sender)
    chats = list(run.chats.items())
    request_ms: list[float] = []

    async def one(number: int):
        chat, group = chats[number % len(chats)]
        author = group[(number // len(chats)) % len(group)]
        sender = await pool.get()
        try:
            started = time.perf_counter()
            status, body, acked = await sender.post(f"/api/chats/{chat}", f"content=rt+{tag}+{number}", author.cookie)
            if status != 201:
                run.send_errors += 1
                run.problems.append(f"send answered {status}: {body[:200]!r}")
                return
            request_ms.append((acked - started) * 1000)
            run.sent[json.loads(body)["id"]] = Sent(chat, author, started, acked, sender.end)
        finally:
            pool.put_nowait(sender)

    await steadily(rate, duration, one)
    for sender in senders:
        sender.close()
    return request_ms


async def connect_senders(run: Run, url: str, rate: float, server_pids: list[int] | None, workers: int) -> list[Sender]:
    """Keep-alive connections for `rate` requests a second: SENDER_CONNECTIONS, fewer at low rates (so that each is
    used well within the server's keep-alive timeout), at least one per worker. With `server_pids` they are spread
    evenly over the workers (see send_steadily); with tens of thousands of sockets open, finding a connection's
    worker takes a while, and a connection kept for SENDER_FRESH_SECONDS without a request is replaced (the server
    answers 408 to one that sends nothing within its request timeout, 30 s)."""
    parts = urlsplit(url)
    wanted = min(SENDER_CONNECTIONS, max(workers, math.ceil(2 * rate)))
    kept: list[tuple[Sender, int | None, float]] = []
    per_worker: dict[int | None, int] = {}
    for _attempt in range(wanted * 50):
        for stale in [entry for entry in kept if time.monotonic() - entry[2] > SENDER_FRESH_SECONDS]:
            kept.remove(stale)
            run.sender_ends.discard(stale[0].end)
            stale[0].close()
            per_worker[stale[1]] -= 1
        if len(kept) == wanted:
            break
        sender = Sender(parts.hostname, parts.port)
        end = await sender.connect()
        connected, owner = time.monotonic(), None
        if server_pids:
            owner = await owner_of(run, server_pids, parts.port, end)
            if per_worker.get(owner, 0) >= math.ceil(wanted / workers):
                sender.close()
                continue
            per_worker[owner] = per_worker.get(owner, 0) + 1
            run.sender_ends.add(end)
        kept.append((sender, owner, connected))
    return [sender for sender, _owner, _connected in kept]


async def steadily(rate: float, duration: float, one) -> None:
    """Start `one(number)` `rate` times a second for `duration` seconds on an absolute schedule; wait for all."""
    began = time.perf_counter()
    tasks = []
    for number in range(int(rate * duration)):
        delay = began + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)


class MemoryFigures:
    """RSS per stream, from the readings a result keeps (rss_before, rss_half, rss_after) and its stream count."""

    @property
    def per_stream_kib(self) -> float:
        """RSS growth per stream, all streams against none."""
        return (self.rss_after - self.rss_before) / self.streams / 1024

    @property
    def marginal_kib(self) -> float:
        """RSS growth per stream of the second half of the streams."""
        return (self.rss_after - self.rss_half) / (self.streams - self.streams // 2) / 1024


@dataclass
class Result(MemoryFigures):
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


def analyse(run: Run, result: Result, owners: dict[End, int]) -> None:
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
                    stream_worker, send_worker = owners.get(stream.end), owners.get(sent.connection_end)
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
    try:
        return await _measure(run, url, server_pid, result, duration, tag, warmup)
    finally:
        await finish(run)


async def _measure(run: Run, url: str, server_pid: int, result: Result, duration: float, tag: str, warmup: bool):
    members = run.members
    if warmup:  # the first streams and sends load code and fill caches; keep that out of the numbers
        await open_streams(run, url, members[:50])
        await send_steadily(run, url, result.rate, 2, f"{tag}w")
        await asyncio.sleep(DRAIN_SECONDS)
        await close_all(run)
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
            owner = run.owners.get(stream.end, 0)
            result.streams_per_worker[owner] = result.streams_per_worker.get(owner, 0) + 1
    cpu_before, wall_before, client_before = cpu_seconds(pids), time.perf_counter(), client_cpu_seconds(run)
    result.request_ms = await send_steadily(run, url, result.rate, duration, tag, workers, result.workers)
    wall = time.perf_counter() - wall_before
    result.server_cpu = (cpu_seconds(pids) - cpu_before) / wall
    result.client_cpu = (client_cpu_seconds(run) - client_before) / wall
    await asyncio.sleep(DRAIN_SECONDS)
    for end in run.sender_ends:
        owner = run.owners.get(end, 0)
        result.senders_per_worker[owner] = result.senders_per_worker.get(owner, 0) + 1
    await collect(run)
    analyse(run, result, run.owners)
    result.problems += run.problems
    return result


async def finish(run: Run) -> None:
    """Close every stream, and stop the helper processes."""
    with contextlib.suppress(OSError, EOFError, RuntimeError):
        await close_all(run)
    for holder in run.holders:
        await holder.stop()
    run.holders.clear()


def raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )


# Streams at scale (issue 25).

IDLE_SECONDS = 30.0  # the churn's baseline: the same streams open, nobody coming or going (two heartbeats each)


@dataclass
class Typed:
    chat: int
    typist: Member
    active: bool
    started: float
    acked: float
    connection_end: End


@dataclass
class Typing:
    """The typing scenario: every request must reach every stream of the chat's other members, once, in order."""

    members: int
    posts: int = 0
    deliveries: int = 0
    lost: int = 0
    extra: int = 0
    wrong: int = 0  # read with the other `active` than the request's op
    strays: int = 0  # read by the typist's own streams, or outside the chat
    early: int = 0  # read before the typist read its 204 (counted as 0 ms)
    latencies: list[float] = field(default_factory=list)  # ms, from the 204
    from_request: list[float] = field(default_factory=list)  # ms, from writing the request
    cross: list[float] = field(default_factory=list)  # ms, stream on another worker than the request
    same: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0


@dataclass
class Churn:
    per_minute: int
    seconds: float  # the measured window
    grace: float  # the server's --presence-grace
    connects: int = 0  # streams that reached `ready` in the window
    failures: int = 0
    ready_ms: list[float] = field(default_factory=list)  # from connecting to the `ready` event
    presence: dict[str, int] = field(default_factory=dict)  # presence events all streams read in the window, by state
    idle_cpu: float = 0.0  # share of one core, the same streams open and nobody coming or going
    churn_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def cost(self) -> float:
        """What the churn adds to the idle streams' cost, in shares of one core."""
        return self.churn_cpu - self.idle_cpu


@dataclass
class ScaleResult(MemoryFigures):
    label: str
    streams: int
    workers: int
    database: str
    users: int  # the streams' users, every one a member of the fan-out chat
    fanout_rate: float
    setup_seconds: float = 0.0
    rss_before: int = 0
    rss_half: int = 0
    rss_after: int = 0
    open_seconds: list[float] = field(default_factory=list)  # opening each half of the streams
    settle_seconds: list[float] = field(default_factory=list)  # then until the server and the client were quiet
    presence_on_open: int = 0  # presence events the streams read while their users came online
    fanout_cpu_seconds: float = 0.0  # the server's, sending and until every stream had read the last message
    streams_per_worker: dict[int, int] = field(default_factory=dict)
    fanout: Result | None = None
    typing: Typing | None = None
    churn: Churn | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def per_member(self) -> int:
        return math.ceil(self.streams / self.users)


async def on_connections(url: str, jobs: list, work) -> list:
    """`await work(sender, job)` for every job, over SETUP_CONNECTIONS keep-alive connections; the answers in order."""
    parts = urlsplit(url)
    answers = [None] * len(jobs)
    todo = iter(enumerate(jobs))

    async def worker():
        sender = Sender(parts.hostname, parts.port)
        await sender.connect()
        try:
            for number, job in todo:
                answers[number] = await work(sender, job)
        finally:
            sender.close()

    await asyncio.gather(*(worker() for _ in range(min(SETUP_CONNECTIONS, len(jobs)))))
    return answers


async def register(url: str, names: list[str]) -> list[Member]:
    """Register a user for each name, SETUP_CONNECTIONS at a time."""

    async def one(sender: Sender, name: str) -> Member:
        form = urlencode({"name": name, "password": PASSWORD, "email": f"{name}@bench.example"})
        status, head, body, _ = await sender.request("/api/user/0", form, "")
        if status != 201:
            raise RuntimeError(f"registering {name} answered {status}: {body[:200]!r}")
        cookies = {}
        for line in head.split(b"\r\n"):
            header, _, value = line.partition(b":")
            if header.strip().lower() == b"set-cookie":
                cookie, _, text = value.strip().split(b";", 1)[0].decode().partition("=")
                cookies[cookie] = text
        return Member(json.loads(body)["id"], f"user_id={cookies['user_id']}; token={cookies['token']}")

    return await on_connections(url, names, one)


async def make_chat(url: str, title: str, owner: Member, others: list[Member]) -> int:
    """A chat that `owner` creates and adds `others` to, one request each, SETUP_CONNECTIONS at a time."""
    parts = urlsplit(url)
    sender = Sender(parts.hostname, parts.port)
    await sender.connect()
    try:
        status, body, _ = await sender.post("/api/chats", urlencode({"title": title}), owner.cookie)
    finally:
        sender.close()
    if status != 201:
        raise RuntimeError(f"creating a chat answered {status}: {body[:200]!r}")
    chat = json.loads(body)["id"]

    async def add(sender: Sender, member: Member) -> None:
        status, body, _ = await sender.post(f"/api/chats/{chat}/members", f"user_id={member.user_id}", owner.cookie)
        if status != 201:
            raise RuntimeError(f"adding user {member.user_id} to chat {chat} answered {status}: {body[:200]!r}")

    await on_connections(url, others, add)
    return chat


async def settle(run: Run, server_pids: list[int]) -> float:
    """Wait until the server and this client (its helpers included) each used less than QUIET_SHARE of a core over
    a second, or QUIET_LIMIT_SECONDS passed; the seconds waited."""
    began = time.perf_counter()
    while True:
        server, client, wall = cpu_seconds(server_pids), client_cpu_seconds(run), time.perf_counter()
        await asyncio.sleep(1)
        elapsed = time.perf_counter() - wall
        busiest = max(cpu_seconds(server_pids) - server, client_cpu_seconds(run) - client) / elapsed
        if busiest < QUIET_SHARE or time.perf_counter() - began > QUIET_LIMIT_SECONDS:
            return time.perf_counter() - began


async def type_steadily(
    run: Run, url: str, chat: int, typists: list[Member], duration: float, server_pids: list[int] | None, workers: int
) -> list[float]:
    """Every typist says start, stop, start, ... every TYPING_EVERY_SECONDS, the typists in turn: len(typists) /
    TYPING_EVERY_SECONDS requests a second for `duration` seconds. Returns each request's time (ms)."""
    rate = len(typists) / TYPING_EVERY_SECONDS
    senders = await connect_senders(run, url, rate, server_pids, workers)
    pool: asyncio.Queue[Sender] = asyncio.Queue()
    for sender in senders:
        pool.put_nowait(sender)
    request_ms: list[float] = []

    async def one(number: int):
        typist = typists[number % len(typists)]
        active = (number // len(typists)) % 2 == 0
        sender = await pool.get()
        try:
            started = time.perf_counter()
            form = "op=start" if active else "op=stop"
            status, body, acked = await sender.post(f"/api/chats/{chat}/typing", form, typist.cookie)
            if status != 204:
                run.send_errors += 1
                run.problems.append(f"typing answered {status}: {body[:200]!r}")
                return
            request_ms.append((acked - started) * 1000)
            run.typed.append(Typed(chat, typist, active, started, acked, sender.end))
        finally:
            pool.put_nowait(sender)

    await steadily(rate, duration, one)
    for sender in senders:
        sender.close()
    return request_ms


def analyse_typing(run: Run, chat: int, typists: list[Member], result: Typing, owners: dict[End, int]) -> None:
    """Match the typing events each stream read from each typist, in order, to that typist's requests."""
    sent: dict[int, list[Typed]] = {}
    for typed in run.typed:
        sent.setdefault(typed.typist.user_id, []).append(typed)
    members = {member.user_id for member in typists}
    got: dict[tuple[Stream | FarStream, int], list[tuple[bool, float]]] = {}
    for stream, user, in_chat, active, moment in run.typing_arrivals:
        reader = stream.member.user_id
        if in_chat != chat or reader not in members or reader == user:
            result.strays += 1
        else:
            got.setdefault((stream, user), []).append((active, moment))
    result.posts = len(run.typed)
    for user, requests in sent.items():
        for member in typists:
            if member.user_id == user:
                continue
            for stream in member.streams:
                arrived = got.get((stream, user), [])
                result.lost += max(0, len(requests) - len(arrived))
                result.extra += max(0, len(arrived) - len(requests))
                for typed, (active, moment) in zip(requests, arrived, strict=False):
                    result.deliveries += 1
                    result.wrong += active != typed.active
                    latency = (moment - typed.acked) * 1000
                    result.early += latency < 0
                    result.latencies.append(max(0.0, latency))
                    result.from_request.append((moment - typed.started) * 1000)
                    if owners:
                        stream_worker, typing_worker = owners.get(stream.end), owners.get(typed.connection_end)
                        if stream_worker is not None and typing_worker is not None:
                            same = stream_worker == typing_worker
                            (result.same if same else result.cross).append(max(0.0, latency))


async def churning(run: Run, url: str, churners: list[Member], result: Churn, server_pids: list[int]) -> None:
    """The open streams' CPU over IDLE_SECONDS, then `per_minute` users a minute connecting, holding a stream for
    CHURN_HOLD_SECONDS and leaving, in turn; measured over `seconds` once the first have gone offline (their grace,
    then the next presence sweep)."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    cpu, wall = cpu_seconds(server_pids), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    result.idle_cpu = (cpu_seconds(server_pids) - cpu) / (time.perf_counter() - wall)
    began = time.perf_counter()
    start = began + CHURN_HOLD_SECONDS + result.grace * 4 / 3 + 1  # the sweep runs every grace / 3
    end = start + result.seconds

    async def visit(member: Member) -> None:
        knocked = time.perf_counter()
        counted = start <= knocked < end
        stream = None
        try:
            _, stream = await loop.create_connection(
                lambda: Stream(run, member, parts.netloc),
                parts.hostname,
                parts.port,
                local_addr=(member.address, 0) if member.address else None,
            )
            async with asyncio.timeout(READY_SECONDS):
                await stream.ready
            if counted:
                result.connects += 1
                result.ready_ms.append((time.perf_counter() - knocked) * 1000)
            await asyncio.sleep(CHURN_HOLD_SECONDS)
        except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
            result.failures += counted
            run.problems.append(f"a churning stream of user {member.user_id} failed: {exc!r}")
        finally:
            if stream is not None:
                stream.close()

    async def window() -> None:
        await asyncio.sleep(start - time.perf_counter())
        await collect(run)
        run.presence_seen.clear()
        cpu, wall, client = cpu_seconds(server_pids), time.perf_counter(), client_cpu_seconds(run)
        await asyncio.sleep(end - time.perf_counter())
        elapsed = time.perf_counter() - wall
        result.churn_cpu = (cpu_seconds(server_pids) - cpu) / elapsed
        result.client_cpu = (client_cpu_seconds(run) - client) / elapsed
        await collect(run)
        result.presence = dict(run.presence_seen)

    measuring = asyncio.create_task(window())
    visits: set[asyncio.Task] = set()
    interval = 60 / result.per_minute
    number = 0
    while (at := began + number * interval) < end:
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        visiting = asyncio.create_task(visit(churners[number % len(churners)]))
        visits.add(visiting)
        visiting.add_done_callback(visits.discard)
        number += 1
    await measuring
    for visiting in visits:
        visiting.cancel()
    await asyncio.gather(*visits, return_exceptions=True)


async def measure_scale(
    url: str,
    server_pid: int,
    result: ScaleResult,
    duration: float,
    tag: str,
    *,
    typing_chat: int,
    churn: Churn | None,
    chat_size: int,
    one_address: bool = False,
) -> ScaleResult:
    """Issue 25's scenarios against a running server, in turn: memory of idle streams, fan-out to the chat every
    stream follows, typing in a chat of `typing_chat` members, and `churn` (see the module docstring).

    Each user's streams come from a loopback address of its own, as people's do, unless `one_address`: then all
    come from 127.0.0.1, as measure's do, and the server's per-address connection share (edge/connections.py)
    looks at every one of them whenever another connection from that address opens.
    """
    began = time.perf_counter()
    users = await register(url, [f"rt-{tag}-{n}" for n in range(result.users)])
    churners = await register(url, [f"rt-{tag}-c{n}" for n in range(churn.per_minute if churn else 0)])
    if not one_address:
        for block, people in ((1, users), (2, churners)):
            for number, member in enumerate(people):
                member.address = loopback(number, block)
    fanout_chat = await make_chat(url, "everyone", users[0], users[1:])
    typists = users[:typing_chat]
    typing_chat_id = await make_chat(url, "typing", typists[0], typists[1:]) if len(typists) > 1 else None
    # Each churning user shares a chat with one of the streams' users (and a few other churning users), so that
    # its presence reaches an open stream.
    others = max(1, chat_size - 1)
    for number, first in enumerate(range(0, len(churners), others)):
        await make_chat(url, f"churn {number}", users[number % len(users)], churners[first : first + others])
    result.setup_seconds = time.perf_counter() - began
    run = Run(users, {fanout_chat: users})
    try:
        await _measure_scale(run, url, server_pid, result, duration, tag, typing_chat_id, typists, churners, churn)
    finally:
        await finish(run)
    result.problems += run.problems
    return result


async def _measure_scale(run, url, server_pid, result, duration, tag, typing_chat_id, typists, churners, churn):
    # The first streams and sends load code and fill caches: keep that out of the numbers.
    await open_streams(run, url, run.members[:50])
    await send_steadily(run, url, 5, 2, f"{tag}w")
    await asyncio.sleep(DRAIN_SECONDS)
    await close_all(run)
    run.sent.clear()
    run.arrivals.clear()
    run.presence_seen.clear()
    await asyncio.sleep(1)
    # Memory, as measure does; each half waits for the presence of its users coming online to be handed out.
    plan = stream_plan(run.members, result.per_member, result.streams)
    pids = process_tree(server_pid)
    result.rss_before = rss_bytes(pids)
    for number, half in enumerate((plan[: len(plan) // 2], plan[len(plan) // 2 :])):
        opening = time.perf_counter()
        await open_streams(run, url, half)
        result.open_seconds.append(time.perf_counter() - opening)
        result.settle_seconds.append(await settle(run, pids))
        await asyncio.sleep(SETTLE_SECONDS)
        pids = process_tree(server_pid)
        if number == 0:
            result.rss_half = rss_bytes(pids)
    result.rss_after = rss_bytes(pids)
    await collect(run)
    result.presence_on_open = sum(run.presence_seen.values())
    run.presence_seen.clear()
    workers = pids if result.workers > 1 else None
    if workers:
        run.owners.update(socket_owners(workers, urlsplit(url).port))
        for stream in (stream for member in run.members for stream in member.streams):
            owner = run.owners.get(stream.end, 0)
            result.streams_per_worker[owner] = result.streams_per_worker.get(owner, 0) + 1

    fan = result.fanout = Result(
        f"{result.label}: fan-out",
        result.streams,
        result.workers,
        result.database,
        per_member=result.per_member,
        chat_size=result.users,
        rate=result.fanout_rate,
    )
    cpu, wall, client = cpu_seconds(pids), time.perf_counter(), client_cpu_seconds(run)
    fan.request_ms = await send_steadily(run, url, result.fanout_rate, duration, tag, workers, result.workers)
    await settle(run, pids)  # until the last message has reached every stream
    elapsed = time.perf_counter() - wall
    result.fanout_cpu_seconds = cpu_seconds(pids) - cpu
    fan.server_cpu, fan.client_cpu = result.fanout_cpu_seconds / elapsed, (client_cpu_seconds(run) - client) / elapsed
    await collect(run)
    analyse(run, fan, run.owners)

    if typing_chat_id is not None:
        typing = result.typing = Typing(len(typists))
        run.typing_arrivals.clear()
        cpu, wall, client = cpu_seconds(pids), time.perf_counter(), client_cpu_seconds(run)
        typing.request_ms = await type_steadily(run, url, typing_chat_id, typists, duration, workers, result.workers)
        await settle(run, pids)
        elapsed = time.perf_counter() - wall
        typing.server_cpu = (cpu_seconds(pids) - cpu) / elapsed
        typing.client_cpu = (client_cpu_seconds(run) - client) / elapsed
        await collect(run)
        analyse_typing(run, typing_chat_id, typists, typing, run.owners)

    if churn is not None:
        result.churn = churn
        await churning(run, url, churners, churn, pids)
