"""A bounded headless load run: start chat-server on a fresh SQLite file, run load/locustfile.py, stop the server.

Exits with Locust's exit code, which the locustfile makes non-zero when any request failed or any endpoint's p95 is
over the limit. Reports (HTML, CSVs and the logs) go to load/reports/<timestamp>/.

    python load/run.py [--users 50] [--duration 60] [--spawn-rate 10] [--max-p95-ms 500] [--think-scale 1]
                       [--locust-workers N] [--server-workers 1] [--database URL | --host URL | --cluster URL]

Each option can also come from the environment: LOAD_USERS, LOAD_DURATION, LOAD_SPAWN_RATE, LOAD_MAX_P95_MS,
LOAD_THINK_SCALE, LOAD_LOCUST_WORKERS, LOAD_SERVER_WORKERS, LOAD_DATABASE, LOAD_HOST.

The target is one of:
- a chat-server started here with --server-workers processes, on a fresh SQLite file or on --database (a PostgreSQL
  database is used as it is, migrated at start; the locustfile's names are unique per run);
- --host: a server that already runs on a loopback address, started with `--register-rate off` (every user
  registers from 127.0.0.1) and `--default-who-can-add-me anyone` (users add strangers to their chats); nothing is
  started or stopped;
- --cluster POSTGRES_URL: tests/cluster.py's rehearsal, two chat-server hosts over that database behind HAProxy, with
  rate-limit counts in Redis at 127.0.0.1:6379 (needs the `test` and `redis` extras and Debian's haproxy).

With --locust-workers N (N > 0) Locust runs distributed: one master, which spreads the users over N worker processes
on this machine, gathers their stats, writes the reports and judges the run, then tells the workers to quit. A user
picks the people it adds to chats among the users of its own worker process.
"""

import argparse
import contextlib
import csv
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
STARTUP_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
# Locust gets this long beyond --run-time and the stop timeout to write its reports before it is killed.
GRACE_SECONDS = 60
# The master gives up (and fails the run) when its workers have not all connected within this long.
WORKER_WAIT_SECONDS = 30
# Rate limits stay on except registration, since every Locust user registers from this one address.
# Every user registers from 127.0.0.1, and adds people who never met them to chats, as on a private server where all
# know each other (docs/configuration.md, --default-who-can-add-me).
SERVER_OPTIONS = ["--password-profile", "cheapest", "--register-rate", "off", "--default-who-can-add-me", "anyone"]
REDIS_URL = "redis://127.0.0.1:6379"


def env_default(name: str, fallback):
    return type(fallback)(os.environ[name]) if os.environ.get(name) else fallback


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=env_default("LOAD_USERS", 50))
    parser.add_argument("--duration", type=int, default=env_default("LOAD_DURATION", 60), help="seconds")
    parser.add_argument("--spawn-rate", type=float, default=env_default("LOAD_SPAWN_RATE", 10.0))
    parser.add_argument(
        "--max-p95-ms",
        type=float,
        default=env_default("LOAD_MAX_P95_MS", 0.0) or None,
        help="fail when an endpoint's p95 is above this; default: max-p95-ms in [tool.locust], else 500",
    )
    parser.add_argument("--think-scale", type=float, default=env_default("LOAD_THINK_SCALE", 1.0))
    parser.add_argument("--reports", type=Path, help="default: load/reports/<timestamp>")
    parser.add_argument(
        "--locust-workers",
        type=int,
        default=env_default("LOAD_LOCUST_WORKERS", 0),
        help="Locust worker processes under one master; 0 (default) runs Locust as one process",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=env_default("LOAD_SERVER_WORKERS", 1),
        help="chat-server --workers for the server started here (default 1)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--database",
        default=env_default("LOAD_DATABASE", ""),
        help="the started server's --database (default: a fresh SQLite file); a PostgreSQL database is not emptied",
    )
    target.add_argument(
        "--host",
        default=env_default("LOAD_HOST", ""),
        help="load this running server (a loopback URL such as http://127.0.0.1:8080) instead of starting one",
    )
    target.add_argument(
        "--cluster",
        metavar="POSTGRES_URL",
        help="load two chat-server hosts over this PostgreSQL database behind HAProxy (tests/cluster.py)",
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.duration < 1 or args.spawn_rate <= 0:
        parser.error("--users, --duration and --spawn-rate must be positive")
    if args.locust_workers < 0 or args.server_workers < 1:
        parser.error("--locust-workers must be 0 or more and --server-workers 1 or more")
    if args.host and not is_loopback(args.host):
        parser.error(f"--host {args.host}: load tests only target loopback addresses")
    if args.cluster and not args.cluster.startswith("postgresql://"):
        parser.error("--cluster takes a postgresql:// URL: the hosts share one PostgreSQL database")
    return args


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def chat_server_command() -> list[str]:
    found = shutil.which("chat-server", path=str(Path(sys.executable).parent)) or shutil.which("chat-server")
    if not found:
        raise SystemExit("chat-server is not installed in this environment: pip install -e '.[load]'")
    return [found]


def wait_until_up(server: subprocess.Popen | None, url: str, log_file: Path | None) -> None:
    """Poll the spec until the server answers; a server started here that exits meanwhile ends the run at once."""

    def log_tail() -> str:
        return log_file.read_text()[-2000:] if log_file else ""

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"chat-server exited with {server.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"chat-server did not answer at {url} within {STARTUP_SECONDS}s:\n{log_tail()}")


def stop(process: subprocess.Popen, sig=signal.SIGINT, timeout: float = 15, patience: float = 0) -> None:
    """Signal the process unless it ends by itself within `patience` seconds; kill it if the signal is not enough."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(patience)
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def local_server(args, server_log: Path) -> Iterator[str]:
    """chat-server on a free loopback port, on --database or a fresh SQLite file, until the block ends."""
    url = f"http://{HOST}:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="chat-load-") as tmp, server_log.open("w") as log:
        database = args.database or f"sqlite:///{Path(tmp) / 'chat.db'}"
        port = url.rsplit(":", 1)[1]
        options = ["--host", HOST, "--port", port, "--database", database, "--workers", str(args.server_workers)]
        server = subprocess.Popen(
            [*chat_server_command(), *options, *SERVER_OPTIONS], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            wait_until_up(server, url, server_log)
            yield url
        finally:
            stop(server)


@contextlib.contextmanager
def cluster(database_url: str, server_log: Path) -> Iterator[str]:
    """The HAProxy URL of tests/cluster.py's rehearsal (the one place that knows how the cluster is put together);
    afterwards each host's log is kept as server-<name>.log beside `server_log`."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.cluster import running_cluster
    except ImportError as missing:
        raise SystemExit(f"--cluster needs the test extras: pip install -e '.[test,load,redis]' ({missing})") from None
    with running_cluster(database_url, *SERVER_OPTIONS, "--rate-limit-storage", REDIS_URL) as running:
        try:
            yield running.url
        finally:
            for name, backend in running.backends.items():
                server_log.with_name(f"server-{name}.log").write_text(backend.log())


@contextlib.contextmanager
def target(args, server_log: Path) -> Iterator[str]:
    """The base URL to load, for as long as the block runs."""
    if args.host:
        url = args.host.rstrip("/")
        wait_until_up(None, url, None)
        yield url
    elif args.cluster:
        with cluster(args.cluster, server_log) as url:
            yield url
    else:
        with local_server(args, server_log) as url:
            yield url


def locust_base() -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py")]


def locust_command(args, url: str, reports: Path, master_port: int | None = None) -> list[str]:
    """The headless run; with a master port, as the master that waits for --locust-workers workers."""
    command = [
        *locust_base(),
        "--headless",
        "--host",
        url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.duration}s",
        "--stop-timeout",
        str(STOP_TIMEOUT_SECONDS),
        "--think-scale",
        str(args.think_scale),
        "--html",
        str(reports / "report.html"),
        "--csv",
        str(reports / "locust"),
        "--only-summary",
    ]
    if args.max_p95_ms is not None:
        command += ["--max-p95-ms", str(args.max_p95_ms)]
    if master_port is not None:
        command += [
            *("--master", "--master-bind-host", HOST, "--master-bind-port", str(master_port)),
            *("--expect-workers", str(args.locust_workers), "--expect-workers-max-wait", str(WORKER_WAIT_SECONDS)),
        ]
    return command


def worker_command(master_port: int) -> list[str]:
    """A worker takes users, host and the locustfile's own options from the master's spawn message."""
    return [*locust_base(), "--worker", "--master-host", HOST, "--master-port", str(master_port)]


def run_locust(args, url: str, reports: Path) -> int:
    """Run Locust to its end (single process, or a master and its workers) and return the master's exit code."""
    master_port = free_port() if args.locust_workers else None
    timeout = args.duration + STOP_TIMEOUT_SECONDS + GRACE_SECONDS + (WORKER_WAIT_SECONDS if master_port else 0)
    with contextlib.ExitStack() as stack:
        # Workers keep trying to reach the master until it listens. The stack unwinds last-in first-out, so the
        # master is stopped first, and a master that ends tells its workers to quit: they get a while to do so.
        for number in range(1, args.locust_workers + 1):
            log = stack.enter_context((reports / f"locust-worker-{number}.log").open("w"))
            worker = subprocess.Popen(worker_command(master_port), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            stack.callback(stop, worker, signal.SIGTERM, patience=STOP_TIMEOUT_SECONDS)
        locust = subprocess.Popen(locust_command(args, url, reports, master_port), cwd=ROOT)
        stack.callback(stop, locust, signal.SIGTERM)
        try:
            return locust.wait(timeout)
        except subprocess.TimeoutExpired:
            print("locust did not stop in time; killing it", file=sys.stderr)
            return 1


def summary(reports: Path) -> str | None:
    """One line from Locust's stats CSV: the numbers a scale-out table needs. Locust's total also counts the
    checked stream deliveries (type SSE), which are not requests to the server, so HTTP requests are shown apart."""
    stats = reports / "locust_stats.csv"
    if not stats.exists():
        return None
    with stats.open(newline="") as file:
        rows = list(csv.DictReader(file))
    total = next((row for row in rows if row["Name"] == "Aggregated"), None)
    if total is None:
        return None
    http = sum(float(row["Requests/s"]) for row in rows if row["Type"] not in ("", "SSE"))
    return (
        f"locust mix: {total['Request Count']} requests, {total['Failure Count']} failed, "
        f"{float(total['Requests/s']):.1f} req/s ({http:.1f} HTTP requests/s), p50 {total['50%']} ms, "
        f"p95 {total['95%']} ms"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    reports = args.reports or HERE / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    reports.mkdir(parents=True, exist_ok=True)
    server_log = reports / "server.log"
    with target(args, server_log) as url:
        workers = args.locust_workers
        processes = f"{workers} Locust worker{'s' * (workers > 1)}" if workers else "one Locust process"
        print(f"loading {url}: {args.users} users for {args.duration}s from {processes}", flush=True)
        code = run_locust(args, url, reports)
    for log in sorted(reports.glob("server*.log")):
        if tracebacks := log.read_text().count("Traceback"):
            print(f"warning: the server logged {tracebacks} tracebacks; see {log}", file=sys.stderr)
    if line := summary(reports):
        print(line, flush=True)
    print(f"reports: {reports / 'report.html'}, {reports}/locust_*.csv and the logs in {reports}", flush=True)
    print(f"load run {'passed' if code == 0 else 'FAILED'} (exit code {code})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
