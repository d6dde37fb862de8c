"""Routes: the spec's paths and methods exactly (no trailing-slash redirects, no implicit HEAD), and the functions
its names stand for."""

import re

from connexion.utils import get_function_from_name
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

    def _path_item(self, path: str) -> dict | None:
        return next((operations for pattern, operations in self._routes if pattern.match(path)), None)

    def operation(self, path: str, method: str) -> dict | None:
        return (self._path_item(path) or {}).get(method.lower())

    def allowed(self, path: str) -> list[str] | None:
        """The methods the spec declares for this path, or None when the path is not in the spec."""
        operations = self._path_item(path)
        return None if operations is None else sorted(verb.upper() for verb in VERBS if verb in operations)


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


# The package this one is a layer of (chat_server), where handlers/ lives.
PACKAGE = __package__.rpartition(".")[0]


def resolve(name: str):
    """The function a name in the spec stands for (`handlers.auth.login`), inside this package wherever it is
    installed: the spec names handlers by their place in the repository, not by the package they install as."""
    return get_function_from_name(f"{PACKAGE}.{name}")
