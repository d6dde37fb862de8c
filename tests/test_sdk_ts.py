"""A TypeScript client from openapi-typescript and openapi-fetch driven against a live chat-server; Redocly's lint."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chat_server.app import SPEC
from tests.live_server import live_server

pytestmark = pytest.mark.sdk_ts

PROJECT = Path(__file__).parent / "sdk-ts"
GENERATED = PROJECT / "generated" / "chat-api.ts"
BUILD = PROJECT / "dist"
# @redocly/cli 2.77 refuses older Node.js.
NODE_MINIMUM = (20, 19)
INSTALL_TIMEOUT_SECONDS = 600
TOOL_TIMEOUT_SECONDS = 180
SCENARIO_TIMEOUT_SECONDS = 120
SERVER_LOG_CHARS = 10_000
# Redocly sends usage telemetry and checks for updates on every run unless told not to; neither belongs in a test run.
TOOL_ENV = {
    **os.environ,
    "NO_COLOR": "1",
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_NOTIFICATIONS": "true",
    "NPM_CONFIG_UPDATE_NOTIFIER": "false",
}


def require_node() -> None:
    """Skip when Node.js or npm is missing or too old, except under CI, where the TypeScript client must run."""
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not found on PATH; install Node.js >= 20.19 with npm to run `tox -e sdk-ts`"
    else:
        version = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30, check=False)
        found = tuple(int(part) for part in re.findall(r"\d+", version.stdout)[:2])
        if found >= NODE_MINIMUM:
            return
        reason = f"Node.js {version.stdout.strip()} is too old; @redocly/cli needs >= 20.19"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is not skipped)")
    pytest.skip(reason)


def call(*command: str, what: str, timeout: float = TOOL_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """Run a command in tests/sdk-ts; fail with whatever it printed if it outlives its timeout."""
    try:
        return subprocess.run(
            command, cwd=PROJECT, capture_output=True, text=True, env=TOOL_ENV, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} did not finish within {timeout} s: {' '.join(command)}\n{output_of(exc)}")


def run(*command: str, what: str, timeout: float = TOOL_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """Run a command in tests/sdk-ts and fail with its whole output unless it exits 0."""
    result = call(*command, what=what, timeout=timeout)
    assert result.returncode == 0, f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{output_of(result)}"
    return result


def output_of(result: subprocess.CompletedProcess | subprocess.TimeoutExpired) -> str:
    def text(stream: str | bytes | None) -> str:
        return stream.decode(errors="replace") if isinstance(stream, bytes) else stream or ""

    return f"--- stdout ---\n{text(result.stdout)}\n--- stderr ---\n{text(result.stderr)}"


@pytest.fixture(scope="module")
def npm_project() -> Path:
    """tests/sdk-ts with exactly the locked packages installed, once per module."""
    require_node()
    run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", what="npm ci", timeout=INSTALL_TIMEOUT_SECONDS)
    return PROJECT


@pytest.fixture(scope="module")
def generated_types(npm_project) -> Path:
    """The TypeScript types openapi-typescript makes from the spec, fresh for this run."""
    GENERATED.unlink(missing_ok=True)
    # --no: npx must use the locked local copy, never fetch another version.
    result = run("npx", "--no", "--", "openapi-typescript", str(SPEC), "-o", str(GENERATED), what="openapi-typescript")
    assert GENERATED.is_file(), f"openapi-typescript wrote nothing to {GENERATED}\n{output_of(result)}"
    return GENERATED


def test_openapi_typescript_types_name_every_operation(generated_types):
    spec = yaml.safe_load(SPEC.read_text())
    operation_ids = {
        operation["operationId"]
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    }
    source = generated_types.read_text()
    operations = source[source.index("export interface operations {") :]

    missing = sorted(name for name in operation_ids if not re.search(rf"^    {re.escape(name)}: {{$", operations, re.M))

    assert operation_ids, "the spec declares no operationIds"
    assert missing == [], f"operations missing from {generated_types.name}: {missing}"


def test_scenario_typecheck_strict_passes(generated_types):
    run("npx", "--no", "--", "tsc", "--noEmit", "-p", ".", what="tsc --noEmit (strict)")


def test_scenario_against_live_server_passes(generated_types):
    shutil.rmtree(BUILD, ignore_errors=True)
    run("npx", "--no", "--", "tsc", "-p", ".", what="tsc build")
    script = BUILD / "scenario.js"
    assert script.is_file(), f"tsc did not emit {script}"

    # The scenario adds people who never met to a chat, as on a private server (--default-who-can-add-me).
    with live_server("--default-who-can-add-me", "anyone") as server:
        node = ("node", "--enable-source-maps", str(script), server.api_url)
        result = call(*node, what="the scenario", timeout=SCENARIO_TIMEOUT_SECONDS)
        server_log = server.log()[-SERVER_LOG_CHARS:]

    report = f"{output_of(result)}\n--- server log, last {SERVER_LOG_CHARS} characters ---\n{server_log}"
    assert result.returncode == 0, f"the scenario failed (exit {result.returncode})\n{report}"
    assert result.stdout.rstrip().endswith("scenario passed"), f"the scenario stopped early\n{report}"


def describe(problem: dict) -> str:
    """One line per Redocly problem: severity, rule, where in the spec, and what is wrong."""
    where = (problem.get("location") or [{}])[0]
    pointer, line = where.get("pointer", "?"), where.get("start", {}).get("line", "?")
    return f"{problem['severity']} {problem['ruleId']} at {pointer} (line {line}): {problem['message']}"


def test_redocly_lint_recommended_reports_nothing(npm_project):
    # JSON output carries the totals and every problem; the human formats bury them under a Node.js 20 banner.
    lint = ("npx", "--no", "--", "redocly", "lint", str(SPEC), "--extends", "recommended", "--format", "json")
    result = call(*lint, what="redocly lint")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"redocly lint printed no JSON report (exit {result.returncode})\n{output_of(result)}")
    problems = "\n".join(describe(problem) for problem in report["problems"])

    # `ignored` counts problems hidden by a .redocly.lint-ignore.yaml, which would silence the recommended ruleset.
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, f"{report['totals']}\n{problems}"
    assert result.returncode == 0, f"redocly lint exited {result.returncode}\n{output_of(result)}"
