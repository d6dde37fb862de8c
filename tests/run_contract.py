"""Fuzz a live chat-server with the schemathesis CLI, the way a user runs it in their own CI.

    python -m tests.run_contract [extra schemathesis options, e.g. --max-examples 500]

Starts `chat-server` on a free loopback port with a fresh SQLite file and runs
`schemathesis run openapi/chat.yaml` against it with every phase and every check, twice:

1. as a freshly registered user (settings in schemathesis.toml, auth from tests/schemathesis_hooks.py);
2. as two peers, alice and bob (tests/contract-peers.toml), so that the object-level authorization
   check replays each one's reads as the other.

Every check is on by default. Neither pass adds `--checks all`: that flag would override the few
per-operation exceptions the config files document.

Stops the server and exits non-zero if either pass failed.
"""

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("peer-alice", "peer-bob")


def schemathesis(api_url: str, *options: str, env=None) -> int:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        *options[:2],
        "run",
        "openapi/chat.yaml",
        "--url",
        api_url,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        *options[2:],
    ]
    print("\n$", " ".join(command), flush=True)
    return subprocess.run(command, env={**os.environ, **(env or {})}, cwd=ROOT, check=False).returncode


def main(extra: list[str]) -> int:
    # The fuzzer guesses passwords and registers a user after every 401, all from 127.0.0.1: with the limits on,
    # its own logins would be refused. tests/test_limits.py tests them.
    # It uploads hundreds of files as one user too; tests/test_uploads.py tests the upload rate.
    options = ("--login-rate", "off", "--login-address-rate", "off", "--register-rate", "off", "--upload-rate", "off")
    with live_server(*options) as server:
        fresh_user = schemathesis(
            server.api_url,
            "--config-file",
            "schemathesis.toml",
            *extra,
            env={"SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        )
        for name in PEERS:
            form = {"name": name, "password": "peer-password", "email": f"{name}@example.com"}
            httpx.post(f"{server.api_url}/user/0", data=form).raise_for_status()
        peers = schemathesis(server.api_url, "--config-file", "tests/contract-peers.toml", *extra)
    print(f"\nfresh-user pass exit code {fresh_user}, peers pass exit code {peers}")
    return fresh_user or peers


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
