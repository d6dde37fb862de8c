"""A bounded headless load run: start chat-server on a fresh SQLite file, run load/locustfile.py, stop the server.

Exits with Locust's exit code, which the locustfile makes non-zero when any request failed or any endpoint's p95 is
over the limit. Reports (HTML, CSVs and the server log) go to load/reports/<timestamp>/.

    python load/run.py [--users 50] [--duration 60] [--spawn-rate 10] [--max-p95-ms 500] [--think-scale 1]

Each option can also come from the environment: LOAD_USERS, LOAD_DURATION, LOAD_SPAWN_RATE, LOAD_MAX_P95_MS,
LOAD_THINK_SCALE.
"""

import argparse
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
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
STARTUP_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
# Locust gets this long beyond --run-time and the stop timeout to write its reports before it is killed.
GRACE_SECONDS = 60


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
    args = parser.parse_args(argv)
    if args.users < 1 or args.duration < 1 or args.spawn_rate <= 0:
        parser.error("--users, --duration and --spawn-rate must be positive")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def chat_server_command() -> list[str]:
    found = shutil.which("chat-server", path=str(Path(sys.executable).parent)) or shutil.which("chat-server")
    if not found:
        raise SystemExit("chat-server is not installed in this environment: pip install -e '.[load]'")
    return [found]


def wait_until_up(server: subprocess.Popen, url: str, log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"chat-server exited with {server.returncode}:\n{log_file.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"chat-server did not answer at {url} within {STARTUP_SECONDS}s:\n{log_file.read_text()[-2000:]}")


def stop(process: subprocess.Popen, sig=signal.SIGINT, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def locust_command(args, url: str, reports: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
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
    return command


def main(argv=None) -> int:
    args = parse_args(argv)
    reports = args.reports or HERE / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    reports.mkdir(parents=True, exist_ok=True)
    server_log = reports / "server.log"
    url = f"http://{HOST}:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="chat-load-") as tmp, server_log.open("w") as log:
        database = f"sqlite:///{Path(tmp) / 'chat.db'}"
        port = url.rsplit(":", 1)[1]
        options = ["--host", HOST, "--port", port, "--database", database, "--workers", "1"]
        server = subprocess.Popen(
            # Every Locust user registers from this one address; the other limits stay on.
            [*chat_server_command(), *options, "--password-profile", "cheapest", "--register-rate", "off"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            wait_until_up(server, url, server_log)
            print(f"chat-server is up at {url}; {args.users} users for {args.duration}s", flush=True)
            locust = subprocess.Popen(locust_command(args, url, reports), cwd=ROOT)
            try:
                code = locust.wait(args.duration + STOP_TIMEOUT_SECONDS + GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                print("locust did not stop in time; killing it", file=sys.stderr)
                stop(locust, signal.SIGTERM)
                code = 1
            finally:
                stop(locust, signal.SIGTERM)
        finally:
            stop(server)
    tracebacks = server_log.read_text().count("Traceback")
    if tracebacks:
        print(f"warning: the server logged {tracebacks} tracebacks; see {server_log}", file=sys.stderr)
    print(f"reports: {reports / 'report.html'}, {reports}/locust_*.csv, {server_log}", flush=True)
    print(f"load run {'passed' if code == 0 else 'FAILED'} (exit code {code})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
