"""Schemathesis auth hook: log in as a freshly registered user, and register another after any 401.

The fuzzer logs itself out, renames and deletes its own account, so a fixed login would stop working
mid-run; a new user per 401 keeps every later request authenticated. Load it with
`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks` for the CLI; the pytest tests register it by importing it.
"""

import secrets

import httpx
import schemathesis
from starlette.testclient import TestClient


def register_fresh_user(app=None, base_url: str = "") -> dict[str, str]:
    """Register a new user over HTTP (or in-process when given the ASGI app) and return its session cookies."""
    form = {"name": f"fuzz-{secrets.token_hex(6)}", "password": secrets.token_urlsafe(12), "email": "fuzz@example.com"}
    if app is not None:
        with TestClient(app) as client:
            response = client.post("/api/user/0", data=form)
    else:
        response = httpx.post(f"{base_url}/user/0", data=form)
    response.raise_for_status()
    return {"user_id": response.cookies["user_id"], "token": response.cookies["token"]}


@schemathesis.auth()
class FreshUserAuth:
    def get(self, case, context):
        return register_fresh_user(context.app, context.operation.schema.get_base_url())

    def set(self, case, data, context):
        case.cookies = {**(case.cookies or {}), **data}
