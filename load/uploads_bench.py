"""Files (issue 23), measured from outside: upload and download speed on loopback, the server's memory during
concurrent uploads, and what another user's reads feel meanwhile.

Used by `python load/benchmark.py uploads`, which starts the servers. Every upload is a FILE_BYTES file of random
bytes held in memory and streamed by httpx as a multipart/form-data body (its `files=` with a file object, which
httpx reads 64 KiB at a time); every download is read to its end with `iter_raw`. Random bytes are no image, so
the server stores them without decoding anything: these are the transfer's costs, not Pillow's.

Memory is the growth of the server's RSS (every process of its tree, from /proc) during CONCURRENT uploads at once,
each on its own connection: the largest of samples taken every SAMPLE_SECONDS from the first byte sent to the last
201, less the median of five samples just before. Another user meanwhile requests GET /api/chats in a loop, one
request at a time on one connection, from a process of its own (so that the uploading threads' GIL does not delay
its clock); only the requests it began while the uploads ran are counted.
"""

import io
import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx
import realtime as rt

MiB = 2**20
MB = 1_000_000
FILE_BYTES = 25 * MiB
CONCURRENT = 10
SAMPLE_SECONDS = 0.02
TIMEOUT = httpx.Timeout(60.0)
OBSERVER_WARMUP = 50  # requests before the observer says it is ready
OBSERVER_LIMIT_SECONDS = 120.0  # the observer stops by itself after this, whatever happens to its parent


def client(url: str, cookie: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Cookie": cookie}, timeout=TIMEOUT)


def upload(session: httpx.Client, data: bytes, name: str) -> dict:
    """POST the bytes as the form's `file` part, streamed from memory; the 201's body."""
    response = session.post("/api/uploads", files={"file": (name, io.BytesIO(data), "application/octet-stream")})
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    return response.json()


def download(session: httpx.Client, upload_id: int) -> int:
    """GET the upload to its last byte; how many bytes came."""
    received = 0
    with session.stream("GET", f"/api/uploads/{upload_id}") as response:
        if response.status_code != 200:
            raise RuntimeError(f"download answered {response.status_code}")
        for piece in response.iter_raw():
            received += len(piece)
    return received


@dataclass
class Transfer:
    """One upload and one download of the same file: MB/s and the server's CPU time for each."""

    upload_mbps: float
    download_mbps: float
    upload_cpu_ms: float
    download_cpu_ms: float


def transfers(url: str, cookie: str, server_pid: int, tries: int = 3) -> list[Transfer]:
    """`tries` uploads of a fresh FILE_BYTES file, one at a time, each downloaded once it is stored."""
    pids = rt.process_tree(server_pid)
    results = []
    with client(url, cookie) as session:
        for n in range(tries):
            data = os.urandom(FILE_BYTES)
            cpu, began = rt.cpu_seconds(pids), time.perf_counter()
            stored = upload(session, data, f"speed-{n}.bin")
            up_seconds, up_cpu = time.perf_counter() - began, rt.cpu_seconds(pids) - cpu
            if stored["size"] != FILE_BYTES:
                raise RuntimeError(f"stored {stored['size']} bytes of {FILE_BYTES}")
            cpu, began = rt.cpu_seconds(pids), time.perf_counter()
            received = download(session, stored["id"])
            down_seconds, down_cpu = time.perf_counter() - began, rt.cpu_seconds(pids) - cpu
            if received != FILE_BYTES:
                raise RuntimeError(f"downloaded {received} bytes of {FILE_BYTES}")
            results.append(
                Transfer(FILE_BYTES / up_seconds / MB, FILE_BYTES / down_seconds / MB, up_cpu * 1000, down_cpu * 1000)
            )
    return results


def observe(url: str, cookie: str, ready, stop, out) -> None:
    """In a process of its own: GET /api/chats one request after another until `stop`; (began, ms, status) each."""
    samples = []
    deadline = time.monotonic() + OBSERVER_LIMIT_SECONDS
    with client(url, cookie) as session:
        for _ in range(OBSERVER_WARMUP):
            session.get("/api/chats")
        ready.set()
        while not stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            status = session.get("/api/chats").status_code
            samples.append((began, (time.monotonic() - began) * 1000, status))
    out.put(samples)


@dataclass
class Concurrent:
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0  # a second after the last 201
    samples: int = 0
    seconds: float = 0.0
    largest_gap_ms: float = 0.0  # between two memory samples
    other_ms: list[float] = field(default_factory=list)
    other_failures: int = 0

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before

    @property
    def aggregate_mbps(self) -> float:
        return CONCURRENT * FILE_BYTES / self.seconds / MB


def concurrent_uploads(url: str, cookie: str, other_cookie: str, server_pid: int) -> Concurrent:
    """CONCURRENT uploads of distinct FILE_BYTES files at once, one connection each: the server's RSS meanwhile, and
    another user's GET /api/chats latencies (see the module docstring)."""
    result = Concurrent()
    pids = rt.process_tree(server_pid)
    files = [os.urandom(FILE_BYTES) for _ in range(CONCURRENT)]
    sessions = [client(url, cookie) for _ in range(CONCURRENT)]
    spawn = multiprocessing.get_context("spawn")
    ready, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
    observer = spawn.Process(target=observe, args=(url, other_cookie, ready, stop, out), daemon=True)
    observer.start()
    try:
        for session in sessions:  # connect each one first: the uploads then start at once
            session.get("/api/session").raise_for_status()
        if not ready.wait(60):
            raise RuntimeError("the observer did not start")
        befores = []
        for _ in range(5):
            befores.append(rt.rss_bytes(pids))
            time.sleep(SAMPLE_SECONDS)
        result.rss_before = int(statistics.median(befores))
        start, errors = threading.Barrier(CONCURRENT + 1), []

        def one(n: int) -> None:
            start.wait()
            try:
                upload(sessions[n], files[n], f"concurrent-{n}.bin")
            except Exception as error:  # reported below, after the others finish
                errors.append(error)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.monotonic()
        peak, last = result.rss_before, began
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, rt.rss_bytes(pids))
            now = time.monotonic()
            result.largest_gap_ms = max(result.largest_gap_ms, (now - last) * 1000)
            last = now
            result.samples += 1
            time.sleep(SAMPLE_SECONDS)
        ended = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"{len(errors)} of {CONCURRENT} uploads failed: {errors[0]}")
        result.seconds, result.rss_peak = ended - began, peak
        samples = out.get(timeout=30)
        during = [(ms, status) for at, ms, status in samples if began <= at < ended]
        result.other_ms = [ms for ms, _ in during]
        result.other_failures = sum(status != 200 for _, status in during)
        time.sleep(1)
        result.rss_after = rt.rss_bytes(pids)
    finally:
        stop.set()
        observer.join(10)
        if observer.is_alive():
            observer.terminate()
            observer.join(5)
        for session in sessions:
            session.close()
    return result
