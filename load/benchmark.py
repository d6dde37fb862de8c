"""Benchmarks for BENCHMARKS.md: throughput against the framework floor, cost growth with data, tail under load.

    python load/benchmark.py throughput        # floor vs GET /api/chats, GET /api/chats/{id}?limit=20, send
    python load/benchmark.py growth            # p50/p99 of both reads at 10,000 and at 1,000,000 messages
    python load/benchmark.py scale-out         # two workers on SQLite; one and two on PostgreSQL (--postgres URL)
    python load/benchmark.py postgres          # one worker: PostgreSQL against SQLite and the floors, in rounds
    python load/benchmark.py cluster           # two hosts over PostgreSQL behind HAProxy (tests/cluster.py)
    python load/benchmark.py realtime          # event streams: delivery latency, memory per idle stream; at scale
                                               # (issue 25): 1,000 and 10,000 streams, fan-out to a chat all of
                                               # them follow, typing in a 50-member chat, presence under churn
    python load/benchmark.py search            # worst-query search of a one-message user at 10,000 and 1,000,000
                                               # messages; search p50/p99 at 1,000,000; sends with and without
    python load/benchmark.py uploads           # 25 MiB up and down, RSS during 10 uploads, another user's reads
                                               # meanwhile; sends and history against the code before issue 23
    python load/benchmark.py conversations     # history page (reactions, replies, threads), send and chat list
                                               # (mention_count, a direct chat) against the code before issue 24
    python load/benchmark.py all

Every server is a real uvicorn process with one worker on 127.0.0.1, started and stopped here, on a fresh
SQLite file seeded through load/seed.py. Load comes from wrk (Debian package `wrk`) with 1 thread; runs are
bounded by --duration. Prints Markdown tables.

`realtime` needs no wrk: load/realtime.py opens the streams itself (raw asyncio sockets, thousands from one
process) and sends at a steady --rate. It measures, for every message, the time from the sender reading its 201
to each other member's stream reading the event: with each count of --streams on one worker and SQLite, and
with each count of --pg-streams on two workers and PostgreSQL (--realtime-postgres, whose public schema is
dropped; the database is created if missing). Memory per idle stream is the growth of the server's RSS (all
its processes) from opening the streams, divided by their number.

`realtime` then runs issue 25's scenarios (load/realtime.py, measure_scale) at each count of --scale-streams (one
worker, SQLite) and --pg-scale-streams (two workers, PostgreSQL), each on a server of its own:
--scale-users users (1,000) hold the streams, one each at 1,000 streams and ten each at 10,000, each from a
loopback address of its own (--one-address: all from 127.0.0.1), and all of them are members of one fan-out chat.
It measures the RSS per idle stream (target ≤ 32 KiB at 10,000 on one worker); --fanout-rate messages a second to
the fan-out chat, from each 201 to every stream (targets: p99 under 100 ms for a 1,000-member chat, one stream each,
and under 1 s for a chat that all 10,000 streams follow); typing in a chat of the first --typing-chat (50) users,
from each 204 to every stream of the other members (p99 under 50 ms); and --churn (1,000) other users a minute
connecting and leaving, each sharing a small chat with one of the streams' users, with presence on: the server's
CPU over --churn-seconds against the same streams idle (its cost under 10% of one core). The client raises its own
open-file limit and holds streams beyond 10,000 in helper processes. --realtime-pubsub passes --pubsub to the
servers (redis://127.0.0.1:6379 to measure Redis instead of PostgreSQL's NOTIFY).

`uploads` measures files (issue 23) on one worker, SQLite and the directory store: load/uploads_bench.py makes the
uploads and downloads. Its wrk rounds compare this code with the code before issue 23 (--before, cfea936), which is
extracted with `git archive` into the temporary directory and installed there into a venv of its own, pinned to the
versions of this venv's packages; each server runs on its own database, seeded by its own load/seed.py.

`conversations` compares this code with the code before issue 24 (--conversations-before, 31b440a) the same way, in
one run: both servers up at once, one worker each on SQLite, wrk rounds alternating between them for seed-1's chat
list, a 20-message page of one chat and a send to another. load/conversations_bench.py lays the same messages on both
through the API, and on this code gives the measured page reactions (the reader's own among them), replies, thread
roots with summaries and mentions, and the chat list mention counts and a direct chat; it prints what the page and
the list held. Two more rows time this code's sends with an @mention and with `reply_to` against the plain send of
the code before. The table gives each endpoint's medians, their change, and issue 24's targets, judged by the rate
and by the server's CPU time a request (on a shared machine the rates also follow the other tenants). Last, with the
servers stopped, load/conversations_bench.py times the same reads in-process with each code on its database.
"""

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import conversations_bench as cb
import httpx
import realtime as rt
import uploads_bench as ub

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED_PASSWORD = "seeded-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(command: list[str], probe_path: str, workdir: Path):
    """Run a server command on a free port until the block ends; yield its base URL."""
    with serve_process(command, probe_path, workdir) as (url, _process):
        yield url


@contextlib.contextmanager
def serve_process(command: list[str], probe_path: str, workdir: Path):
    """Run a server command on a free port until the block ends; yield its base URL and its process."""
    port = free_port()
    log = (workdir / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url + probe_path, timeout=1)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def chat_server(database: str, executable: Path = BIN / "chat-server") -> list[str]:
    return [str(executable), "--database", database, "--password-profile", "cheapest", "--no-access-log"]


def floor_server(factory: str) -> list[str]:
    return [str(BIN / "uvicorn"), "--factory", f"load.floor:{factory}", "--no-access-log", "--log-level", "warning"]


def seed(
    database: str,
    users: int,
    chats: int,
    messages: int,
    members_per_chat: int,
    rare_words: int = 0,
    *,
    tree: Path = ROOT,
    python: str = sys.executable,
) -> None:
    """Seed through `tree`'s load/seed.py, run by `python` (a checkout of another commit, with its own venv)."""
    subprocess.run(
        [
            python,
            str(tree / "load" / "seed.py"),
            *("--database", database, "--users", str(users), "--chats", str(chats)),
            *("--messages", str(messages), "--members-per-chat", str(members_per_chat)),
            *("--rare-words", str(rare_words)),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def login(url: str, name: str = "seed-1") -> str:
    response = httpx.post(url + "/api/login", data={"name": name, "password": SEED_PASSWORD})
    response.raise_for_status()
    return f"user_id={response.cookies['user_id']}; token={response.cookies['token']}"


def first_chat(url: str, cookie: str) -> int:
    response = httpx.get(url + "/api/chats", headers={"Cookie": cookie})
    response.raise_for_status()
    return response.json()["chats"][0]["id"]


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, cookie: str = "", *, post_form: str = "", duration: int, connections: int) -> dict:
    """One wrk run; returns requests/s, p50/p99 in ms, the count of non-2xx responses and socket errors, and the
    number of requests."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if post_form:
            script.write(
                f'wrk.method = "POST"\nwrk.body = "{post_form}"\n'
                'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            )
            script.flush()
            command += ["-s", script.name]
        output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)\W+(\d+)", output))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": _ms(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99": _ms(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "errors": errors,
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }


def chat_endpoints(args, workdir: Path, command: list[str], suffix: str = "") -> list[tuple[str, dict]]:
    """wrk against the three measured endpoints of a chat-server seeded with 10 chats x 20 messages."""
    with serve(command, "/api/openapi.json", workdir) as url:
        return endpoints_at(args, url, suffix)


def endpoints_at(args, url: str, suffix: str = "") -> list[tuple[str, dict]]:
    rows = []
    cookie = login(url)
    chat = first_chat(url, cookie)
    targets = [
        ("GET /api/chats (10 chats x 20 messages)", f"{url}/api/chats", ""),
        ("GET /api/chats/{id}?limit=20", f"{url}/api/chats/{chat}?limit=20", ""),
        ("POST /api/chats/{id} (send)", f"{url}/api/chats/{chat}", "content=hello%20there"),
    ]
    for label, target, form in targets:
        wrk(target, cookie, post_form=form, duration=2, connections=args.connections)
        result = wrk(target, cookie, post_form=form, duration=args.duration, connections=args.connections)
        rows.append((label + suffix, result))
    return rows


def cluster(args, workdir: Path) -> None:
    """The same endpoints through HAProxy in front of two chat-server hosts (one worker each) over PostgreSQL."""
    sys.path.insert(0, str(ROOT))
    from tests.cluster import running_cluster

    reset_postgres(args.postgres)
    seed(args.postgres, users=2, chats=10, messages=200, members_per_chat=2)
    with running_cluster(args.postgres, "--no-access-log") as hosts:
        rows = endpoints_at(args, hosts.url, ", 2 hosts behind HAProxy")
    print(f"\nCluster: wrk -t1 -c{args.connections} -d{args.duration}s through HAProxy\n")
    print("| Endpoint | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")


def scale_out(args, workdir: Path) -> None:
    """The same endpoints with two workers on SQLite, and with one and two workers on PostgreSQL."""
    rows = []
    sqlite_url = f"sqlite:///{workdir / 'scale.db'}"
    seed(sqlite_url, users=2, chats=10, messages=200, members_per_chat=2)
    rows += chat_endpoints(args, workdir, [*chat_server(sqlite_url), "--workers", "2"], ", SQLite, 2 workers")
    for workers in (1, 2):
        reset_postgres(args.postgres)
        seed(args.postgres, users=2, chats=10, messages=200, members_per_chat=2)
        command = [*chat_server(args.postgres), "--workers", str(workers)]
        rows += chat_endpoints(args, workdir, command, f", PostgreSQL, {workers} worker{'s' * (workers > 1)}")
    print(f"\nScale-out: wrk -t1 -c{args.connections} -d{args.duration}s\n")
    print("| Endpoint | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")


def postgres_vs_sqlite(args, workdir: Path) -> None:
    """One worker each, in one run: the GET and POST floors, SQLite and PostgreSQL, all four servers up at once.

    The machine's speed drifts by a fifth from minute to minute (other tenants), so a ratio of two runs made
    minutes apart says little. Every endpoint is measured in --rounds rounds instead, each running wrk against
    its floor, SQLite and PostgreSQL back to back; the tables give each server's median, and the median of the
    per-round ratios.
    """
    sqlite_url = f"sqlite:///{workdir / 'versus.db'}"
    seed(sqlite_url, users=2, chats=10, messages=200, members_per_chat=2)
    reset_postgres(args.postgres)
    seed(args.postgres, users=2, chats=10, messages=200, members_per_chat=2)
    floor_cookie = "user_id=1; token=" + "A" * 43
    with (
        serve(floor_server("connexion_async_floor"), "/api/openapi.json", workdir) as floor,
        serve(chat_server(sqlite_url), "/api/openapi.json", workdir) as lite,
        serve(chat_server(args.postgres), "/api/openapi.json", workdir) as pg,
    ):
        servers = {"SQLite": (lite, login(lite)), "PostgreSQL": (pg, login(pg))}
        chats = {name: first_chat(url, cookie) for name, (url, cookie) in servers.items()}
        form = "content=hello%20there"
        endpoints = [
            ("GET /api/chats (10 chats x 20 messages)", "/api/chats", "", "/api/chats"),
            ("GET /api/chats/{id}?limit=20", "/api/chats/{chat}?limit=20", "", "/api/chats"),
            ("POST /api/chats/{id} (send)", "/api/chats/{chat}", form, "/api/chats/1"),
        ]
        results = {}
        for label, path, body, floor_path in endpoints:
            targets = {"floor": (floor + floor_path, floor_cookie)}
            for name, (url, cookie) in servers.items():
                targets[name] = (url + path.format(chat=chats[name]), cookie)
            for target, cookie in targets.values():
                wrk(target, cookie, post_form=body, duration=2, connections=args.connections)
            rounds = results[label] = []
            for _ in range(args.rounds):
                rounds.append(
                    {
                        name: wrk(target, cookie, post_form=body, duration=args.duration, connections=args.connections)
                        for name, (target, cookie) in targets.items()
                    }
                )
    print(
        f"\nPostgreSQL against SQLite: one uvicorn worker each, wrk -t1 -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} rounds of floor, SQLite, PostgreSQL back to back; medians\n"
    )
    print("| Endpoint | floor req/s | SQLite req/s (vs floor) | PostgreSQL req/s (vs floor) | PostgreSQL / SQLite |")
    print("|---|---:|---:|---:|---:|")
    for label, rounds in results.items():
        floor_rps, lite_rps, pg_rps = (median([r[name]["rps"] for r in rounds]) for name in ("floor", *servers))
        lite_ratio = median([r["SQLite"]["rps"] / r["floor"]["rps"] for r in rounds])
        pg_ratio = median([r["PostgreSQL"]["rps"] / r["floor"]["rps"] for r in rounds])
        versus = median([r["PostgreSQL"]["rps"] / r["SQLite"]["rps"] for r in rounds])
        print(
            f"| {label} | {floor_rps:,.0f} | {lite_rps:,.0f} ({lite_ratio:.2f}) "
            f"| {pg_rps:,.0f} ({pg_ratio:.2f}) | {versus:.0%} |"
        )
    print("\nEvery round, req/s (floor / SQLite / PostgreSQL), and the errors of all rounds:\n")
    print("| Endpoint | rounds | errors |")
    print("|---|---|---:|")
    for label, rounds in results.items():
        each = ", ".join(" / ".join(f"{r[name]['rps']:,.0f}" for name in ("floor", *servers)) for r in rounds)
        errors = sum(r[name]["errors"] for r in rounds for name in ("floor", *servers))
        print(f"| {label} | {each} | {errors} |")


def search_at_scale(args, workdir: Path) -> None:
    """Search at --search-messages messages (a million by default), one worker each on SQLite and PostgreSQL:
    p50 and p99 of a rare word, a common word, a prefix and a phrase, and the send rate with and without the search
    index, in interleaved rounds of the same run.

    1,000 users in 5,000 chats of up to 5 members; one message in ten ends with one of 50,000 made-up words
    (seed.rare_word), so a rare word is in about 2 messages. Searches are made one at a time by seed-1, who is in
    about 25 chats: most matches are in chats it is not in, which a search has to pass over.
    """
    from seed import rare_word

    shape = dict(users=1000, chats=5000, messages=args.search_messages, members_per_chat=5, rare_words=50_000)
    sqlite_path, bare_path = workdir / "search.db", workdir / "search-bare.db"
    began = time.perf_counter()
    seed(f"sqlite:///{sqlite_path}", **shape)
    seeded = {"SQLite": time.perf_counter() - began}
    reset_postgres(args.postgres)
    began = time.perf_counter()
    seed(args.postgres, **shape)
    seeded["PostgreSQL"] = time.perf_counter() - began
    # The same databases without the index, for the send rate it costs.
    shutil.copyfile(sqlite_path, bare_path)
    bare_postgres = without_search_index(bare_path, args.postgres)
    queries = {
        "rare word": [rare_word(n) for n in range(0, 50_000, 50_000 // args.search_requests)],
        "common word (`the`, 3 in 10 messages)": ["the"],
        "prefix (`revi*`, 1 in 10)": ["revi*"],
        'phrase (`"failing build"`, 1 in 10)': ['"failing build"'],
    }
    servers = {
        "SQLite": f"sqlite:///{sqlite_path}",
        "PostgreSQL": args.postgres,
        "SQLite, no index": f"sqlite:///{bare_path}",
        "PostgreSQL, no index": bare_postgres,
    }
    latencies: dict[tuple[str, str], dict] = {}
    sends: dict[str, list[float]] = {name: [] for name in servers}
    with contextlib.ExitStack() as stack:
        urls = {
            name: stack.enter_context(serve(chat_server(url), "/api/openapi.json", workdir))
            for name, url in servers.items()
        }
        cookies = {name: login(url) for name, url in urls.items()}
        for name in ("SQLite", "PostgreSQL"):
            for label, texts in queries.items():
                latencies[(name, label)] = search_latencies(urls[name], cookies[name], texts, args.search_requests)
        targets = {
            name: (url + f"/api/chats/{first_chat(url, cookies[name])}", cookies[name]) for name, url in urls.items()
        }
        form = "content=hello%20there%20searchable%20words"
        for target, cookie in targets.values():
            wrk(target, cookie, post_form=form, duration=2, connections=args.connections)
        for _ in range(args.rounds):
            for name, (target, cookie) in targets.items():
                sends[name].append(
                    wrk(target, cookie, post_form=form, duration=args.duration, connections=args.connections)["rps"]
                )
    print(
        f"\nSearch at {args.search_messages:,} messages: one worker each, "
        f"{args.search_requests} searches one at a time\n"
    )
    print(f"Seeding took {seeded['SQLite']:.0f} s on SQLite and {seeded['PostgreSQL']:.0f} s on PostgreSQL.\n")
    print("| Query | SQLite p50 ms | SQLite p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms | results per page |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in queries:
        lite, pg = latencies[("SQLite", label)], latencies[("PostgreSQL", label)]
        print(
            f"| {label} | {lite['p50']:.1f} | {lite['p99']:.1f} | {pg['p50']:.1f} | {pg['p99']:.1f} "
            f"| {lite['hits']:.1f} / {pg['hits']:.1f} |"
        )
    print(
        f"\nSend rate with and without the search index: wrk -t1 -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} interleaved rounds, medians\n"
    )
    print("| Backend | with the index, req/s | without, req/s | with / without | every round (with / without) |")
    print("|---|---:|---:|---:|---|")
    for name in ("SQLite", "PostgreSQL"):
        with_index, without = sends[name], sends[f"{name}, no index"]
        ratio = median([a / b for a, b in zip(with_index, without, strict=True)])
        rounds = ", ".join(f"{a:,.0f} / {b:,.0f}" for a, b in zip(with_index, without, strict=True))
        print(f"| {name} | {median(with_index):,.0f} | {median(without):,.0f} | {ratio:.0%} | {rounds} |")


# The costliest query the search bounds allow (8 words, 2 prefixes of 2 letters; openapi/chat.yaml, /search).
WORST_SEARCH = "th* re* the review comments see at lunch"


def worst_search(args, workdir: Path) -> None:
    """The worst query the bounds allow, searched by a user who owns one message in a chat of their own, at
    --worst-search-messages (10,000 and 1,000,000) messages on SQLite and PostgreSQL, one worker each: its cost
    must follow the searcher's chats, not the server's (issue 22), so the two sizes should be within 2x."""
    results = {}
    for messages in args.worst_search_messages:
        shape = dict(users=1000, chats=5000, messages=messages, members_per_chat=5, rare_words=50_000)
        sqlite_url = f"sqlite:///{workdir / f'worst-{messages}.db'}"
        seed(sqlite_url, **shape)
        reset_postgres(args.postgres)
        seed(args.postgres, **shape)
        for name, database in (("SQLite", sqlite_url), ("PostgreSQL", args.postgres)):
            with serve(chat_server(database), "/api/openapi.json", workdir) as url:
                results[(name, messages)] = one_message_user_searches(url, args.search_requests)
    print(
        f"\nWorst query (`{WORST_SEARCH}`) by a user who owns one message: one worker, {args.search_requests} "
        "searches one at a time after 20 unmeasured\n"
    )
    sizes = args.worst_search_messages
    print("| Backend | " + " | ".join(f"{n:,} messages p50 / p99 ms" for n in sizes) + " | largest / smallest p50 |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name in ("SQLite", "PostgreSQL"):
        cells = " | ".join(f"{results[(name, n)]['p50']:.2f} / {results[(name, n)]['p99']:.2f}" for n in sizes)
        ratio = results[(name, sizes[-1])]["p50"] / results[(name, sizes[0])]["p50"]
        print(f"| {name} | {cells} | {ratio:.2f}x |")


def one_message_user_searches(url: str, count: int) -> dict:
    """Register a user, give them one chat with one message, and time their worst-query searches."""
    with httpx.Client(base_url=url, timeout=30) as client:
        form = {"name": "lonely-searcher", "password": SEED_PASSWORD, "email": "lonely@seed.example"}
        client.post("/api/user/0", data=form).raise_for_status()
        client.post("/api/login", data={"name": form["name"], "password": SEED_PASSWORD}).raise_for_status()
        chat = client.post("/api/chats", data={"title": "mine"}).json()["id"]
        client.post(f"/api/chats/{chat}", data={"content": "see the review comments at lunch"}).raise_for_status()
        cookie = f"user_id={client.cookies['user_id']}; token={client.cookies['token']}"
    return search_latencies(url, cookie, [WORST_SEARCH], count)


def search_latencies(url: str, cookie: str, texts: list[str], count: int) -> dict:
    """Latency of `count` searches one after another (cycling through `texts`), after 20 unmeasured ones."""
    times, hits = [], []
    with httpx.Client(base_url=url, headers={"Cookie": cookie}, timeout=30) as client:
        for n in range(count + 20):
            began = time.perf_counter()
            response = client.get("/api/search", params={"q": texts[n % len(texts)]})
            elapsed = time.perf_counter() - began
            response.raise_for_status()
            if n >= 20:
                times.append(elapsed * 1000)
                hits.append(len(response.json()["messages"]))
    return {"p50": rt.percentile(times, 50), "p99": rt.percentile(times, 99), "hits": statistics.mean(hits)}


def without_search_index(sqlite_path: Path, postgres_url: str) -> str:
    """Drop the search index from a copy of the SQLite database and from a copy of the PostgreSQL one, made here;
    the copy's URL."""
    import sqlite3

    import psycopg2

    with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
        for trigger in ("insert", "update", "delete"):
            connection.execute(f"DROP TRIGGER message_search_{trigger}")
        connection.execute("DROP TABLE message_search")
        connection.commit()
    parts = httpx.URL(postgres_url)
    name = parts.path.lstrip("/")
    server = dict(host=parts.host, port=parts.port or 5432, user=parts.username or "postgres")
    with contextlib.closing(psycopg2.connect(**server, dbname="postgres")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}_bare"')
            cursor.execute(f'CREATE DATABASE "{name}_bare" TEMPLATE "{name}"')
    with contextlib.closing(psycopg2.connect(**server, dbname=f"{name}_bare")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX message_search")
    return str(parts.copy_with(path=f"/{name}_bare"))


def median(values: list[float]) -> float:
    return statistics.median(values)


def reset_postgres(url: str) -> None:
    """Empty the benchmark's PostgreSQL database, created if missing: its public schema is dropped and made anew."""
    from playhouse.db_url import connect

    create_postgres_database(url)
    database = connect(url)
    with database:
        database.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


def throughput(args, workdir: Path) -> None:
    rows = []
    floors = (
        ("bare Starlette, 10-chat list", "starlette_floor"),
        ("floor: Connexion + cookie auth, sync handler", "connexion_floor"),
        ("floor: Connexion + cookie auth, async handler", "connexion_async_floor"),
    )
    for label, factory in floors:
        with serve(floor_server(factory), "/api/chats", workdir) as url:
            cookie = "user_id=1; token=" + "A" * 43
            wrk(url + "/api/chats", cookie, duration=2, connections=args.connections)
            rows.append((label, wrk(url + "/api/chats", cookie, duration=args.duration, connections=args.connections)))
    database = f"sqlite:///{workdir / 'throughput.db'}"
    seed(database, users=2, chats=10, messages=200, members_per_chat=2)
    rows += chat_endpoints(args, workdir, chat_server(database))
    sync_floor, async_floor = rows[1][1]["rps"], rows[2][1]["rps"]
    print(f"\nThroughput: one uvicorn worker, wrk -t1 -c{args.connections} -d{args.duration}s\n")
    print("| Endpoint | req/s | p50 ms | p99 ms | errors | vs sync floor | vs async floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(
            f"| {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} "
            f"| {r['rps'] / sync_floor:.0%} | {r['rps'] / async_floor:.0%} |"
        )


def growth(args, workdir: Path) -> None:
    rows = []
    cases = [
        # The same 100 users and 500 chats; only the number of messages grows, so every page is a full 20.
        ("10,000 messages", dict(users=100, chats=500, messages=10_000, members_per_chat=5)),
        ("1,000,000 messages", dict(users=100, chats=500, messages=1_000_000, members_per_chat=5)),
        ("a user in 1,000 chats", dict(users=2, chats=1000, messages=20_000, members_per_chat=2)),
    ]
    for label, shape in cases:
        database = f"sqlite:///{workdir / (label.split()[0].replace(',', '') + '.db')}"
        began = time.perf_counter()
        seed(database, **shape)
        seeded = time.perf_counter() - began
        with serve(chat_server(database), "/api/openapi.json", workdir) as url:
            cookie = login(url)
            chat = first_chat(url, cookie)
            chats = len(httpx.get(url + "/api/chats", headers={"Cookie": cookie}).json()["chats"])
            for name, target in (
                ("GET /api/chats", "/api/chats"),
                ("GET /api/chats/{id}?limit=20", f"/api/chats/{chat}?limit=20"),
            ):
                wrk(url + target, cookie, duration=2, connections=args.growth_connections)
                result = wrk(url + target, cookie, duration=args.duration, connections=args.growth_connections)
                rows.append((label, chats, name, result, seeded))
    print(f"\nCost growth: one uvicorn worker, wrk -t1 -c{args.growth_connections} -d{args.duration}s\n")
    print("| Database | user's chats | Endpoint | p50 ms | p99 ms | req/s | errors |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, chats, name, r, _ in rows:
        print(f"| {label} | {chats} | {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['rps']:,.0f} | {r['errors']} |")


# The targets for delivery p99, by (workers, streams).
REALTIME_TARGETS_MS = {(1, 200): 50, (1, 2000): 250, (2, 200): 100}
REALTIME_TARGET_KB = 50  # kB, 1,000 bytes


def create_postgres_database(url: str) -> None:
    """Create the database of a postgresql:// URL unless it exists (connecting to the server's `postgres` one)."""
    import psycopg2

    parts = httpx.URL(url)
    name = parts.path.lstrip("/")
    connection = psycopg2.connect(
        host=parts.host, port=parts.port or 5432, user=parts.username or "postgres", dbname="postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def realtime_scenario(args, workdir: Path, database: str, workers: int, streams: int) -> rt.Result:
    users = min(args.stream_users, streams)
    per_member = math.ceil(streams / users)
    kind = "SQLite" if database.startswith("sqlite") else "PostgreSQL"
    result = rt.Result(
        f"{kind}, {workers} worker{'s' * (workers > 1)}, {streams:,} streams",
        streams=streams,
        workers=workers,
        database=kind,
        per_member=per_member,
        chat_size=args.chat_size,
        rate=args.rate,
    )
    command = [
        *chat_server(database),
        *("--workers", str(workers), "--register-rate", "off", "--max-connections", str(streams + 1000)),
        *("--default-who-can-add-me", "anyone"),  # the load's users add strangers to their chats
    ]
    with serve_process(command, "/api/openapi.json", workdir) as (url, process):
        tag = f"{workers}w{streams}s{int(time.time())}"
        rt.run_async(rt.measure(url, process.pid, result, users, args.duration, tag))
    return result


def realtime_scale_scenario(args, workdir: Path, database: str, workers: int, streams: int) -> rt.ScaleResult:
    """Issue 25's scenarios at `streams` streams: see load/realtime.py (measure_scale)."""
    kind = "SQLite" if database.startswith("sqlite") else "PostgreSQL"
    users = min(args.scale_users, streams)
    label = f"{kind}, {workers} worker{'s' * (workers > 1)}, {streams:,} streams"
    result = rt.ScaleResult(label, streams, workers, kind, users, args.fanout_rate)
    command = [
        *chat_server(database),
        *("--workers", str(workers), "--register-rate", "off"),
        *("--max-connections", str(streams + args.churn + 1000)),
        *("--presence-grace", f"{PRESENCE_GRACE:g}"),
        *("--default-who-can-add-me", "anyone"),  # the load's users add strangers to their chats
    ]
    if result.per_member > 20:  # the default cap of streams per user and process
        command += ["--max-streams-per-user", str(result.per_member)]
    if args.realtime_pubsub:
        command += ["--pubsub", args.realtime_pubsub]
    churn = rt.Churn(args.churn, args.churn_seconds, PRESENCE_GRACE) if args.churn else None
    with serve_process(command, "/api/openapi.json", workdir) as (url, process):
        tag = f"x{workers}w{streams}s{int(time.time())}"
        scale = rt.measure_scale(
            url,
            process.pid,
            result,
            args.duration,
            tag,
            typing_chat=args.typing_chat,
            churn=churn,
            chat_size=args.chat_size,
            one_address=args.one_address,
        )
        rt.run_async(scale)
    return result


def realtime(args, workdir: Path) -> None:
    """Delivery latency on open event streams, and memory per idle stream; then issue 25's scenarios at scale
    (fan-out to a large chat, typing, churn with presence). See the module docstring."""
    rt.raise_open_file_limit(rt.CLIENT_STREAMS + args.churn + 1000)
    results = []
    for streams in args.streams:
        database = f"sqlite:///{workdir / f'realtime-{streams}.db'}"
        results.append(realtime_scenario(args, workdir, database, 1, streams))
    for streams in args.pg_streams:
        reset_postgres(args.realtime_postgres)
        results.append(realtime_scenario(args, workdir, args.realtime_postgres, 2, streams))
    if results:
        print_realtime(args, results)
    scaled = []
    for streams in args.scale_streams:
        database = f"sqlite:///{workdir / f'scale-{streams}.db'}"
        scaled.append(realtime_scale_scenario(args, workdir, database, 1, streams))
    for streams in args.pg_scale_streams:
        reset_postgres(args.realtime_postgres)
        scaled.append(realtime_scale_scenario(args, workdir, args.realtime_postgres, 2, streams))
    if scaled:
        print_realtime_scale(args, scaled)


def print_realtime(args, results: list[rt.Result]) -> None:
    print(
        f"\nRealtime: chats of {args.chat_size} members, {args.rate:g} messages/s for {args.duration} s, "
        f"latency from the sender's 201 to the event on each other member's stream\n"
    )
    print(
        "| Scenario | streams per user | deliveries (lost, doubled) | p50 ms | p99 ms | max ms | target p99 "
        "| p99 from request sent ms | send p99 ms | server CPU | client CPU | RSS per idle stream, second half (all) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        target = REALTIME_TARGETS_MS.get((r.workers, r.streams))
        met = r.latencies and rt.percentile(r.latencies, 99) < (target or 0)
        verdict = f"{target} ms {'met' if met else 'MISSED'}" if target else "-"
        kib = r.marginal_kib
        print(
            f"| {r.label} | {r.per_member} | {r.deliveries:,} ({r.lost}, {r.doubled}) "
            f"| {rt.percentile(r.latencies, 50):.1f} | {rt.percentile(r.latencies, 99):.1f} "
            f"| {max(r.latencies, default=math.nan):.1f} | {verdict} "
            f"| {rt.percentile(r.from_request, 99):.1f} | {rt.percentile(r.request_ms, 99):.1f} "
            f"| {r.server_cpu:.0%} | {r.client_cpu:.0%} "
            f"| {kib:.1f} KiB ({r.per_stream_kib:.1f}), {'met' if kib * 1.024 < REALTIME_TARGET_KB else 'MISSED'} |"
        )
    for r in results:
        if r.workers > 1:
            split = ", ".join(f"{count} on pid {pid}" for pid, count in sorted(r.streams_per_worker.items()))
            senders = ", ".join(f"{count} on pid {pid}" for pid, count in sorted(r.senders_per_worker.items()))
            print(f"\n{r.label}: streams per process: {split}; sending connections: {senders}")
            for label, values in (("same worker as the send", r.same), ("another worker", r.cross)):
                print(
                    f"- {label}: {len(values):,} deliveries, p50 {rt.percentile(values, 50):.1f} ms, "
                    f"p99 {rt.percentile(values, 99):.1f} ms, max {max(values, default=math.nan):.1f} ms"
                )
    for r in results:
        print(
            f"\n{r.label}: {r.messages} messages, {r.early} deliveries read before the sender's 201 (counted as 0), "
            f"first to last stream of a message p50 {rt.percentile(r.spread, 50):.1f} ms, "
            f"p99 {rt.percentile(r.spread, 99):.1f} ms, "
            f"RSS {r.rss_before / 2**20:.1f} MiB idle, {r.rss_half / 2**20:.1f} MiB with half the streams open, "
            f"{r.rss_after / 2**20:.1f} MiB with all"
        )
        for problem in r.problems[:10]:
            print(f"- problem: {problem}")


# Issue 25's targets, and the presence grace the scale scenarios run with (the server's default).
STREAM_TARGET_KIB = 32  # RSS per idle stream, at 10,000 streams on one worker
TYPING_TARGET_MS = 50  # p99, a 50-member chat
CHURN_TARGET = 0.10  # of one core, 1,000 users a minute
PRESENCE_GRACE = 30.0


def fanout_target_ms(r: rt.ScaleResult) -> int | None:
    """p99 from the 201: a 1,000-member chat, to every member's stream, within 100 ms; a chat that all 10,000 streams
    follow, within 1 s."""
    if r.streams == 1000 and r.users == 1000:
        return 100
    return 1000 if r.streams == 10_000 else None


def verdict(value: float, target: float, unit: str) -> str:
    """`met`, or by how much it missed."""
    space = "" if unit.startswith("%") else " "
    if value <= target:
        return f"≤ {target:g}{space}{unit}: met"
    return f"≤ {target:g}{space}{unit}: **MISSED** by {value - target:,.1f}{space}{unit} ({value / target - 1:+.0%})"


def print_realtime_scale(args, results: list[rt.ScaleResult]) -> None:
    """The tables of issue 25's scenarios."""
    p = rt.percentile
    print(
        f"\nStreams at scale (issue 25): every stream's user in one fan-out chat; {args.fanout_rate:g} messages/s to "
        f"it for {args.duration} s, latency from the sender's 201 to the event on every stream (the sender's own "
        "left out)\n"
    )
    print(
        "| Scenario | users x streams each | opening, s (then quiet after, s) | RSS per idle stream, second half (all) "
        "| deliveries (lost, doubled) | p50 ms | p99 ms | max ms | p99 target | from the send written, p99 ms "
        "| first to last stream p99 ms | send p99 ms | server CPU (µs a delivery) | client CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        f = r.fanout
        target = fanout_target_ms(r)
        goal = verdict(p(f.latencies, 99), target, "ms") if target and f.latencies else "-"
        opening = " + ".join(f"{o:.1f} ({q:.0f})" for o, q in zip(r.open_seconds, r.settle_seconds, strict=True))
        per_delivery = r.fanout_cpu_seconds / max(f.deliveries, 1) * 1e6
        print(
            f"| {r.label} | {r.users:,} x {r.per_member} | {opening} "
            f"| {r.marginal_kib:.1f} KiB ({r.per_stream_kib:.1f}), {verdict(r.marginal_kib, STREAM_TARGET_KIB, 'KiB')} "
            f"| {f.deliveries:,} ({f.lost}, {f.doubled}) | {p(f.latencies, 50):.1f} | {p(f.latencies, 99):.1f} "
            f"| {max(f.latencies, default=math.nan):.1f} | {goal} | {p(f.from_request, 99):.1f} "
            f"| {p(f.spread, 99):.1f} | {p(f.request_ms, 99):.1f} "
            f"| {f.server_cpu:.0%} ({per_delivery:.0f}) | {f.client_cpu:.0%} |"
        )
    typed = [r for r in results if r.typing]
    if typed:
        print(
            "\nTyping: every member of the chat says start, stop, start, ... every "
            f"{rt.TYPING_EVERY_SECONDS:g} s for {args.duration} s; latency from the 204 to the `typing` event on "
            "every stream of the other members\n"
        )
        print(
            "| Scenario | members x streams each | requests | deliveries (lost, extra, wrong way, strays) | p50 ms "
            "| p99 ms | max ms | p99 target | read before the 204 | from the request sent, p50 / p99 ms "
            "| request p99 ms | server CPU | client CPU |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in typed:
            t = r.typing
            goal = verdict(p(t.latencies, 99), TYPING_TARGET_MS, "ms") if t.latencies else "-"
            print(
                f"| {r.label} | {t.members} x {r.per_member} | {t.posts} "
                f"| {t.deliveries:,} ({t.lost}, {t.extra}, {t.wrong}, {t.strays}) | {p(t.latencies, 50):.1f} "
                f"| {p(t.latencies, 99):.1f} | {max(t.latencies, default=math.nan):.1f} | {goal} "
                f"| {t.early / max(t.deliveries, 1):.0%} | {p(t.from_request, 50):.1f} / {p(t.from_request, 99):.1f} "
                f"| {p(t.request_ms, 99):.1f} | {t.server_cpu:.0%} | {t.client_cpu:.0%} |"
            )
    churned = [r for r in results if r.churn]
    if churned:
        print(
            f"\nChurn: users connecting once a minute each, holding a stream {rt.CHURN_HOLD_SECONDS:g} s and leaving "
            f"(offline after the {PRESENCE_GRACE:g} s grace), with the streams above open; server CPU over "
            f"{args.churn_seconds} s of churn against {rt.IDLE_SECONDS:g} s of the same streams idle\n"
        )
        print(
            "| Scenario | users a minute | connected (failed) | to `ready` p50 / p99 ms | presence events read "
            "| server CPU idle | with churn | the churn's cost | target | client CPU |"
        )
        print("|---|---:|---:|---:|---|---:|---:|---:|---|---:|")
        for r in churned:
            c = r.churn
            seen = ", ".join(f"{count:,} {state}" for state, count in sorted(c.presence.items())) or "none"
            print(
                f"| {r.label} | {c.per_minute:,} | {c.connects:,} ({c.failures}) "
                f"| {p(c.ready_ms, 50):.1f} / {p(c.ready_ms, 99):.1f} | {seen} | {c.idle_cpu:.1%} | {c.churn_cpu:.1%} "
                f"| **{c.cost:.1%}** | {verdict(c.cost * 100, CHURN_TARGET * 100, '% of a core')} "
                f"| {c.client_cpu:.0%} |"
            )
    for r in results:
        f = r.fanout
        print(
            f"\n{r.label}: setup {r.setup_seconds:.0f} s; RSS {r.rss_before / 2**20:.1f} MiB idle, "
            f"{r.rss_half / 2**20:.1f} MiB with half the streams open, {r.rss_after / 2**20:.1f} MiB with all; "
            f"{r.presence_on_open:,} presence events read while the users came online; {f.messages} messages, "
            f"{f.early} deliveries read before the sender's 201 (counted as 0)"
        )
        if r.workers > 1:
            split = ", ".join(f"{count:,} on pid {pid}" for pid, count in sorted(r.streams_per_worker.items()))
            print(f"- streams per process: {split}")
            phases = [("fan-out", f.same, f.cross)]
            if r.typing:
                phases.append(("typing", r.typing.same, r.typing.cross))
            for what, same, cross in phases:
                for label, values in (("same worker as the request", same), ("another worker", cross)):
                    print(
                        f"- {what}, {label}: {len(values):,} deliveries, p50 {p(values, 50):.1f} ms, "
                        f"p99 {p(values, 99):.1f} ms, max {max(values, default=math.nan):.1f} ms"
                    )
        for problem in r.problems[:10]:
            print(f"- problem: {problem}")


# Issue 23's targets.
UPLOAD_TARGET_MBPS = 100
DOWNLOAD_TARGET_MBPS = 300
UPLOAD_RSS_TARGET_MIB = 16
OTHER_USER_P99_TARGET_MS = 50
BEFORE_RATIO_TARGET = 0.90


def install_commit(commit: str, workdir: Path) -> tuple[Path, Path]:
    """`git archive` the commit into workdir and pip-install that tree into a venv of its own beside it, pinned to
    this venv's versions of every package both use; (the tree, the venv's bin directory)."""
    tree, venv = workdir / f"tree-{commit}", workdir / f"venv-{commit}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    constraints = workdir / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines() if "==" in line))
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(constraints), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"installing {commit} failed:\n{installed.stdout[-2000:]}{installed.stderr[-2000:]}")
    return tree, venv / "bin"


def uploads(args, workdir: Path) -> None:
    """Files (issue 23), one worker on SQLite with the directory store; see load/uploads_bench.py and the module
    docstring. The wrk rounds alternate this code and the code before issue 23 (A, B, A, B, ...), both servers up."""
    began = time.perf_counter()
    before_tree, before_bin = install_commit(args.before, workdir)
    installed = time.perf_counter() - began
    shape = dict(users=2, chats=10, messages=200, members_per_chat=2)

    database = f"sqlite:///{workdir / 'uploads.db'}"
    seed(database, **shape)
    command = [*chat_server(database), "--upload-quota", "100G", "--upload-rate", "off"]
    with serve_process(command, "/api/openapi.json", workdir) as (url, process):
        uploader, other = login(url, "seed-1"), login(url, "seed-2")
        with ub.client(url, uploader) as session:  # the first upload's imports and lazy setup, out of the figures
            ub.download(session, ub.upload(session, os.urandom(64 * 1024), "warm-up.bin")["id"])
        concurrent = ub.concurrent_uploads(url, uploader, other, process.pid)
        speeds = ub.transfers(url, uploader, process.pid, tries=3)

    now_db, before_db = f"sqlite:///{workdir / 'now.db'}", f"sqlite:///{workdir / 'before.db'}"
    seed(now_db, **shape)
    seed(before_db, **shape, tree=before_tree, python=str(before_bin / "python"))
    servers = {"now": chat_server(now_db), "before": chat_server(before_db, before_bin / "chat-server")}
    names = list(servers)
    form = "content=hello%20there"
    endpoints = [("`GET /api/chats/{id}?limit=20`", "?limit=20", ""), ("send (no attachments)", "", form)]
    rounds: dict[str, list[dict]] = {label: [] for label, _, _ in endpoints}
    with contextlib.ExitStack() as stack:
        running = {
            name: stack.enter_context(serve_process(cmd, "/api/openapi.json", workdir)) for name, cmd in servers.items()
        }
        urls = {name: url for name, (url, _) in running.items()}
        pids = {name: rt.process_tree(process.pid) for name, (_, process) in running.items()}

        for name, url in urls.items():  # the right code answers on each: only the new one has uploads
            has_uploads = "/uploads" in httpx.get(url + "/api/openapi.json").json()["paths"]
            if has_uploads != (name == "now"):
                raise RuntimeError(f"the {name} server {'has' if has_uploads else 'lacks'} POST /api/uploads")
        cookies = {name: login(url) for name, url in urls.items()}
        chats = {name: f"{url}/api/chats/{first_chat(url, cookies[name])}" for name, url in urls.items()}

        def measured(name: str, target: str, body: str) -> dict:
            """wrk against one server, with the server's CPU time per request (from /proc) over the run."""
            cpu = rt.cpu_seconds(pids[name])
            result = wrk(target, cookies[name], post_form=body, duration=args.duration, connections=args.connections)
            result["cpu_us"] = (rt.cpu_seconds(pids[name]) - cpu) / max(result["requests"], 1) * 1e6
            return result

        for label, query, body in endpoints:
            for name in urls:
                wrk(chats[name] + query, cookies[name], post_form=body, duration=2, connections=args.connections)
            for _ in range(args.upload_rounds):
                rounds[label].append({name: measured(name, chats[name] + query, body) for name in names})

    def verdict(met: bool) -> str:
        return "met" if met else "**MISSED**"

    best_up = max(speeds, key=lambda s: s.upload_mbps)
    best_down = max(speeds, key=lambda s: s.download_mbps)
    ups = ", ".join(f"{s.upload_mbps:,.0f}" for s in speeds)
    downs = ", ".join(f"{s.download_mbps:,.0f}" for s in speeds)
    up_cpu = ", ".join(f"{s.upload_cpu_ms:.0f}" for s in speeds)
    down_cpu = ", ".join(f"{s.download_cpu_ms:.0f}" for s in speeds)
    growth = concurrent.growth / ub.MiB
    other = concurrent.other_ms
    p99 = rt.percentile(other, 99)
    print(
        f"\nUploads (issue 23): one uvicorn worker, SQLite, files in a directory beside it, 127.0.0.1; "
        f"{ub.FILE_BYTES // ub.MiB} MiB of random bytes per file, streamed from memory by httpx as multipart; "
        f"MB = 10^6 bytes, MiB = 2^20\n"
    )
    print("| Measure | Figure | Target | |")
    print("|---|---|---|---|")
    print(
        f"| Upload, one {ub.FILE_BYTES // ub.MiB} MiB file, best of {len(speeds)} "
        f"| **{best_up.upload_mbps:,.0f} MB/s** "
        f"(each: {ups}; server CPU {up_cpu} ms) | ≥ {UPLOAD_TARGET_MBPS} MB/s "
        f"| {verdict(best_up.upload_mbps >= UPLOAD_TARGET_MBPS)} |"
    )
    print(
        f"| Download of it, best of {len(speeds)} | **{best_down.download_mbps:,.0f} MB/s** "
        f"(each: {downs}; server CPU {down_cpu} ms) | ≥ {DOWNLOAD_TARGET_MBPS} MB/s "
        f"| {verdict(best_down.download_mbps >= DOWNLOAD_TARGET_MBPS)} |"
    )
    print(
        f"| Server RSS growth during {ub.CONCURRENT} concurrent uploads | **{growth:.1f} MiB** "
        f"({concurrent.rss_before / ub.MiB:.1f} MiB before, peak {concurrent.rss_peak / ub.MiB:.1f} over "
        f"{concurrent.samples} samples at most {concurrent.largest_gap_ms:.0f} ms apart, "
        f"{concurrent.rss_after / ub.MiB:.1f} a second after; all {ub.CONCURRENT} stored in "
        f"{concurrent.seconds:.2f} s, {concurrent.aggregate_mbps:,.0f} MB/s together) "
        f"| < {UPLOAD_RSS_TARGET_MIB} MiB | {verdict(growth < UPLOAD_RSS_TARGET_MIB)} |"
    )
    print(
        f"| Another user's `GET /api/chats` meanwhile, one at a time | p50 {rt.percentile(other, 50):.1f} ms, "
        f"**p99 {p99:.1f} ms** (max {max(other, default=math.nan):.1f} ms, {len(other)} requests, "
        f"{concurrent.other_failures} not 200) | p99 < {OTHER_USER_P99_TARGET_MS} ms "
        f"| {verdict(p99 < OTHER_USER_P99_TARGET_MS)} |"
    )
    for label, runs in rounds.items():
        now, before = (median([r[name]["rps"] for r in runs]) for name in names)
        now_cpu, before_cpu = (median([r[name]["cpu_us"] for r in runs]) for name in names)
        paired = median([r["now"]["rps"] / r["before"]["rps"] for r in runs])
        each = ", ".join(f"{r['now']['rps']:,.0f} / {r['before']['rps']:,.0f}" for r in runs)
        errors = sum(r[name]["errors"] for r in runs for name in names)
        print(
            f"| {label}: this code / before issue 23 ({args.before}), wrk -t1 -c{args.connections} "
            f"-d{args.duration}s, medians of {len(runs)} rounds | **{now:,.0f} / {before:,.0f} req/s: "
            f"{now / before:.0%}** (median of each round's ratio {paired:.0%}; server CPU {now_cpu:,.0f} / "
            f"{before_cpu:,.0f} µs a request, {now_cpu / before_cpu:.0%}; rounds, A then B: {each}; {errors} errors) "
            f"| ≥ {BEFORE_RATIO_TARGET:.0%} | {verdict(now / before >= BEFORE_RATIO_TARGET)} |"
        )
    print(
        f"\nInstalling {args.before} into its venv took {installed:.0f} s; "
        f"the whole run {time.perf_counter() - began:.0f} s."
    )


# Issue 24's targets: this code's rate as a share of the code before it, at least.
CONVERSATION_TARGETS = {"list": 0.90, "history": 0.85, "send": 0.90}


def conversations(args, workdir: Path) -> None:
    """Issue 24 against the code before it: see the module docstring and load/conversations_bench.py."""
    began = time.perf_counter()
    before_tree, before_bin = install_commit(args.conversations_before, workdir)
    installed = time.perf_counter() - began
    # 40 messages a chat on average: every chat has a full page before the sends that decorate it.
    shape = dict(users=2, chats=10, messages=400, members_per_chat=2)
    after_db, before_db = f"sqlite:///{workdir / 'after.db'}", f"sqlite:///{workdir / 'before.db'}"
    seed(after_db, **shape)
    seed(before_db, **shape, tree=before_tree, python=str(before_bin / "python"))
    # Direct chats follow who_can_add_me; the seeded users never chose theirs. Both servers get the same option.
    open_door = ["--default-who-can-add-me", "anyone"]
    servers = {
        "before": [*chat_server(before_db, before_bin / "chat-server"), *open_door],
        "after": [*chat_server(after_db), *open_door],
    }
    names = list(servers)
    with contextlib.ExitStack() as stack:
        running = {
            name: stack.enter_context(serve_process(cmd, "/api/openapi.json", workdir)) for name, cmd in servers.items()
        }
        urls = {name: url for name, (url, _) in running.items()}
        pids = {name: rt.process_tree(process.pid) for name, (_, process) in running.items()}
        for name, url in urls.items():  # the right code answers on each: only this code opens direct chats
            has_direct = "/direct/{user_id}" in httpx.get(url + "/api/openapi.json").json()["paths"]
            if has_direct != (name == "after"):
                raise RuntimeError(f"the {name} server {'has' if has_direct else 'lacks'} POST /api/direct/{{user_id}}")
        cookies = {name: login(url) for name, url in urls.items()}
        chat_ids = {
            name: sorted(
                c["id"] for c in httpx.get(url + "/api/chats", headers={"Cookie": cookies[name]}).json()["chats"]
            )
            for name, url in urls.items()
        }
        if chat_ids["before"] != chat_ids["after"]:
            raise RuntimeError(f"the two seeds differ: chats {chat_ids}")
        history_chat, send_chat, *others = chat_ids["after"]
        for name, url in urls.items():
            cb.decorate(url, SEED_PASSWORD, name == "after", history_chat, others)
        shapes = {name: cb.shape(url, SEED_PASSWORD, history_chat) for name, url in urls.items()}
        laid = shapes["after"]
        if not (laid.with_my_reaction and laid.replies and laid.thread_roots and laid.mention_count):
            raise RuntimeError(f"this code's data lacks issue 24's features: {laid.describe()}")
        for name, got in shapes.items():
            if (got.page_messages, got.chats) != (cb.PAGE, len(chat_ids[name]) + 1):
                raise RuntimeError(f"the {name} server's data is not the planned shape: {got.describe()}")
        for name, url in urls.items():
            plain_page = httpx.get(f"{url}/api/chats/{others[-1]}?limit={cb.PAGE}", headers={"Cookie": cookies[name]})
            if len(plain_page.json()["messages"]) != cb.PAGE:
                raise RuntimeError(f"chat {others[-1]} of the {name} server holds less than a page")
        reply_to = httpx.get(
            f"{urls['after']}/api/chats/{send_chat}?limit=1", headers={"Cookie": cookies["after"]}
        ).json()["messages"][0]["id"]

        plain = "content=hello%20there"
        mention = "content=%40seed-2%20hello%20there"
        endpoints = [  # (key, label, path, the body for each server)
            ("list", "`GET /api/chats` (11 chats, mention_count)", "/api/chats", {}),
            ("history", f"`GET /api/chats/{{id}}?limit={cb.PAGE}`", f"/api/chats/{history_chat}?limit={cb.PAGE}", {}),
            (
                "plain history",
                "the same, a chat with none of issue 24's features (the code's cost alone)",
                f"/api/chats/{others[-1]}?limit={cb.PAGE}",
                {},
            ),
            ("send", "send (`POST /api/chats/{id}`, plain)", f"/api/chats/{send_chat}", {n: plain for n in names}),
            (
                "mention",
                "send with an @mention (the code before: the same text)",
                f"/api/chats/{send_chat}",
                {n: mention for n in names},
            ),
            (
                "reply",
                "send with `reply_to` (the code before: a plain send)",
                f"/api/chats/{send_chat}",
                {"before": plain, "after": f"{plain}&reply_to={reply_to}"},
            ),
        ]
        rounds: dict[str, list[dict]] = {key: [] for key, *_ in endpoints}

        def measured(name: str, target: str, body: str) -> dict:
            """wrk against one server, with the server's CPU time per request (from /proc) over the run."""
            cpu = rt.cpu_seconds(pids[name])
            result = wrk(target, cookies[name], post_form=body, duration=args.duration, connections=args.connections)
            result["cpu_us"] = (rt.cpu_seconds(pids[name]) - cpu) / max(result["requests"], 1) * 1e6
            return result

        for key, _label, path, bodies in endpoints:
            for name, url in urls.items():
                wrk(url + path, cookies[name], post_form=bodies.get(name, ""), duration=2, connections=args.connections)
            for number in range(args.rounds):  # before first in odd rounds, this code first in even ones
                order = names if number % 2 == 0 else names[::-1]
                rounds[key].append({name: measured(name, urls[name] + path, bodies.get(name, "")) for name in order})
        after_shape = cb.shape(urls["after"], SEED_PASSWORD, history_chat)
        user_id = int(re.search(r"user_id=(\d+)", cookies["after"]).group(1))

    # The servers are gone; their databases stay. The same reads, in-process, alternating the two codes.
    databases = {"before": (before_db, str(before_bin / "python")), "after": (after_db, sys.executable)}
    timed: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(3):
        for name, (database, python) in databases.items():
            command = [python, str(ROOT / "load" / "conversations_bench.py"), "--database", database]
            command += ["--user", str(user_id), "--history-chat", str(history_chat), "--plain-chat", str(others[-1])]
            output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=workdir).stdout
            timed[name].append(json.loads(output.splitlines()[-1]))

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    print(
        f"\nConversations (issue 24): this code ({head.strip() or 'no git'}{' with uncommitted changes' * changed}) "
        f"against the code before it ({args.conversations_before}), one uvicorn "
        f"worker each on SQLite, both up at once; wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} "
        f"rounds alternating the two servers (before first in odd rounds, this code first in even ones), medians\n"
    )
    print(f"This code's data: {laid.describe()}. The code before it: the same messages, plain.\n")
    # One worker is one core's work: on an idle machine its rate is 1 / (CPU a request). On a shared machine wrk's
    # rates follow the other tenants too, so each target is judged both ways.
    print(
        "| Endpoint | before, req/s | this code, req/s | change | per-round ratios, median | server CPU a request, "
        "before / this code | target | by req/s | by CPU a request |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|---|")
    for key, label, _path, _bodies in endpoints:
        runs = rounds[key]
        before, after = (median([r[name]["rps"] for r in runs]) for name in names)
        before_cpu, after_cpu = (median([r[name]["cpu_us"] for r in runs]) for name in names)
        paired = median([r["after"]["rps"] / r["before"]["rps"] for r in runs])
        target = CONVERSATION_TARGETS.get(key)
        goal = by_rate = by_cpu = "-"
        if target is not None:
            goal = f"within {1 - target:.0%} (≥ {target:.0%} of the rate)"
            by_rate = "met" if after / before >= target else "**MISSED**"
            by_cpu = "met" if before_cpu / after_cpu >= target else "**MISSED**"
        print(
            f"| {label} | {before:,.0f} | {after:,.0f} | **{after / before - 1:+.1%}** | {paired - 1:+.1%} "
            f"| {before_cpu:,.0f} / {after_cpu:,.0f} µs ({after_cpu / before_cpu - 1:+.0%}) | {goal} | {by_rate} "
            f"| {by_cpu} |"
        )
    print("\nEvery round, req/s (before / this code), and the errors of all rounds:\n")
    print("| Endpoint | rounds | errors |")
    print("|---|---|---:|")
    for key, label, _path, _bodies in endpoints:
        each = ", ".join(f"{r['before']['rps']:,.0f} / {r['after']['rps']:,.0f}" for r in rounds[key])
        errors = sum(r[name]["errors"] for r in rounds[key] for name in names)
        print(f"| {label} | {each} | {errors} |")
    print(
        "\nThe same reads in-process, without HTTP or the framework: the model call each handler makes "
        "(Chat.listing_for, Message.page) on the databases the servers left, 3 runs of each code alternating, each "
        "the least of 7 batches of 300 calls; the least of the 3 runs:\n"
    )
    print("| Read | before, µs a call | this code, µs a call | change |")
    print("|---|---:|---:|---:|")
    for read, label in (("list", "chat list"), ("history", "history page"), ("plain history", "plain history page")):
        before, after = (min(run[read]["least"] for run in timed[name]) for name in names)
        print(f"| {label} | {before:,.0f} | {after:,.0f} | {after / before - 1:+.0%} |")
    print(
        f"\nAfter the rounds the page and list of this code held: {after_shape.describe()}. "
        f"Installing {args.conversations_before} into its venv took {installed:.0f} s; "
        f"the whole run {time.perf_counter() - began:.0f} s."
    )


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "which",
        choices=[
            "throughput",
            "growth",
            "scale-out",
            "postgres",
            "cluster",
            "realtime",
            "search",
            "uploads",
            "conversations",
            "all",
        ],
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default %(default)s)")
    parser.add_argument("--connections", type=int, default=32, help="for throughput (default %(default)s)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="for postgres: rounds of floor, SQLite, PostgreSQL; for conversations: rounds of before and after "
        "(default %(default)s)",
    )
    parser.add_argument("--growth-connections", type=int, default=4, help="for growth (default %(default)s)")
    parser.add_argument("--search-messages", type=int, default=1_000_000, help="for search (default %(default)s)")
    parser.add_argument(
        "--search-requests", type=int, default=200, help="for search: searches per query (default %(default)s)"
    )
    parser.add_argument(
        "--worst-search-messages",
        type=counts,
        default="10000,1000000",
        help="for search: corpus sizes for the one-message user's worst query (default %(default)s)",
    )
    parser.add_argument(
        "--worst-search-only", action="store_true", help="for search: only the worst query, no wrk runs"
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/chat_bench",
        help="for scale-out, postgres and cluster; its public schema is dropped (default %(default)s)",
    )
    realtime_options = parser.add_argument_group("realtime")
    realtime_options.add_argument(
        "--streams", type=counts, default="200,2000", help="open streams per run, one worker, SQLite (%(default)s)"
    )
    realtime_options.add_argument(
        "--pg-streams", type=counts, default="200", help="open streams per run, two workers, PostgreSQL (%(default)s)"
    )
    realtime_options.add_argument(
        "--stream-users",
        type=int,
        default=200,
        help="users holding the streams, at most 20 streams each per process (%(default)s)",
    )
    realtime_options.add_argument("--chat-size", type=int, default=5, help="members per chat (%(default)s)")
    realtime_options.add_argument("--rate", type=float, default=20, help="messages sent per second (%(default)s)")
    realtime_options.add_argument(
        "--realtime-postgres",
        default="postgresql://postgres@127.0.0.1:5432/bench_rt",
        help="created if missing; its public schema is dropped (default %(default)s)",
    )
    scale_options = parser.add_argument_group("realtime at scale (issue 25)")
    scale_options.add_argument(
        "--scale-streams",
        type=counts,
        default="1000,10000",
        help="streams per run of the scale scenarios, one worker, SQLite (%(default)s)",
    )
    scale_options.add_argument(
        "--pg-scale-streams",
        type=counts,
        default="1000",
        help="streams per run of the scale scenarios, two workers, PostgreSQL (%(default)s; 10000 gets 500s while "
        "storage/green.py waits with select(), see BENCHMARKS.md)",
    )
    scale_options.add_argument(
        "--scale-users",
        type=int,
        default=1000,
        help="users holding the streams, all members of the fan-out chat: one stream each at 1,000 streams, ten at "
        "10,000 (%(default)s)",
    )
    scale_options.add_argument(
        "--fanout-rate", type=float, default=1, help="messages a second to the fan-out chat (%(default)s)"
    )
    scale_options.add_argument(
        "--typing-chat", type=int, default=50, help="members of the typing chat, 0 for none (%(default)s)"
    )
    scale_options.add_argument(
        "--churn", type=int, default=1000, help="users connecting and leaving a minute, 0 for none (%(default)s)"
    )
    scale_options.add_argument(
        "--churn-seconds", type=int, default=60, help="the churn's measured window (%(default)s)"
    )
    scale_options.add_argument(
        "--one-address",
        action="store_true",
        help="every stream from 127.0.0.1, as the realtime scenario's (default: a loopback address for each user)",
    )
    scale_options.add_argument(
        "--realtime-pubsub",
        default="",
        help="the servers' --pubsub for the scale scenarios, such as redis://127.0.0.1:6379 (default: theirs, auto)",
    )
    upload_options = parser.add_argument_group("uploads")
    upload_options.add_argument(
        "--before",
        default="cfea936",
        help="the commit to compare sends and history with (%(default)s, before issue 23)",
    )
    upload_options.add_argument(
        "--upload-rounds", type=int, default=4, help="rounds of wrk on each of the two servers (%(default)s)"
    )
    conversation_options = parser.add_argument_group("conversations")
    conversation_options.add_argument(
        "--conversations-before",
        default="31b440a",
        help="the commit to compare history, sends and the chat list with (%(default)s, before issue 24)",
    )
    args = parser.parse_args(argv)
    needs_wrk = args.which != "realtime" and not (args.which == "search" and args.worst_search_only)
    if needs_wrk and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        if args.which in ("throughput", "all"):
            throughput(args, Path(tmp))
        if args.which in ("growth", "all"):
            growth(args, Path(tmp))
        if args.which in ("scale-out", "all"):
            scale_out(args, Path(tmp))
        if args.which in ("postgres", "all"):
            postgres_vs_sqlite(args, Path(tmp))
        if args.which in ("cluster", "all"):
            cluster(args, Path(tmp))
        if args.which in ("realtime", "all"):
            realtime(args, Path(tmp))
        if args.which in ("search", "all"):
            worst_search(args, Path(tmp))
            if not args.worst_search_only:
                search_at_scale(args, Path(tmp))
        if args.which in ("uploads", "all"):
            uploads(args, Path(tmp))
        if args.which in ("conversations", "all"):
            conversations(args, Path(tmp))


if __name__ == "__main__":
    main()
