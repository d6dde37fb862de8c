"""Exact routes: the spec's paths and methods, with no trailing-slash redirects and no implicit HEAD."""

import re

from starlette.exceptions import HTTPException

VERBS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


class Routes:
    """The spec's paths as patterns, to tell a path that is not served (404) from a method it lacks (405)."""

    def __init__(self, spec: dict):
        base = spec["servers"][0]["url"]
        self._routes = [
            (re.compile("^" + base + re.sub(r"\{[^}/]+\}", "[^/]+", path) + "$"), operations)
            for path, operations in spec["paths"].items()
        ]

    def allowed(self, path: str) -> list[str] | None:
        """The methods the spec declares for this path, or None when the path is not in the spec."""
        for pattern, operations in self._routes:
            if pattern.match(path):
                return sorted(verb.upper() for verb in VERBS if verb in operations)
        return None


class ExactRoutes:
    """Refuse what Starlette would otherwise quietly serve: a trailing slash gets 404, not a 307 to the path
    without it (a client would re-send its body and cookies there), and HEAD gets 405, not the GET handler
    run in full (HEAD /api/logout would end the session). Paths outside the spec, such as Swagger UI, pass."""

    def __init__(self, app, routes: Routes):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if path.endswith("/") and self.routes.allowed(path.rstrip("/")) is not None:
                raise HTTPException(404, "paths take no trailing slash")
            if scope["method"] == "HEAD" and self.routes.allowed(path) is not None:
                raise HTTPException(405)
        await self.app(scope, receive, send)
