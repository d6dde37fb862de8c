"""Cross-site request forgery: a page on another site must not make a visitor's browser change anything here with
the visitor's cookies.

Browsers say where a request comes from: `Origin` on every POST, PUT and DELETE (or, in older ones, only a
`Referer`). Such a request is served when that origin is the server's own (the scheme it was reached with and its
`Host`) or one of `--allowed-origins`; any other, `Origin: null` included, gets 403. A request that carries neither
header does not come from a browser page (curl, generated clients) and passes, as the OWASP CSRF cheat sheet allows,
unless the browser says `Sec-Fetch-Site: cross-site`.

Safe methods change nothing, so they are not checked, except an operation the spec marks `x-changes-state` (the
seed's `GET /api/logout`): a cross-site page could navigate to it, which sends neither header. HEAD is refused by
routes.ExactRoutes anyway.
"""

import os
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from ..core.errors import Forbidden
from .routes import Routes

UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, lower-cased and without a default port; None when it names no origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def allowed_origins(env=os.environ) -> frozenset[str]:
    """The origins of CHAT_ALLOWED_ORIGINS (comma-separated); ValueError for an entry that is not an origin."""
    origins = set()
    for entry in filter(None, (part.strip() for part in env.get("CHAT_ALLOWED_ORIGINS", "").split(","))):
        origin = origin_of(entry)
        if origin is None or urlsplit(entry).path.strip("/") or urlsplit(entry).query:
            raise ValueError(
                f"an allowed origin is scheme://host[:port], such as https://app.example.com; not {entry!r}"
            )
        origins.add(origin)
    return frozenset(origins)


class CrossSiteRequests:
    """ASGI middleware: refuse (403) a request that changes state when its Origin, or else Referer, is not one this
    server serves pages from, or when it carries neither and the browser says it is cross-site."""

    def __init__(self, app, routes: Routes, allowed: frozenset[str] = frozenset()):
        self.app = app
        self.routes = routes
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self._changes_state(scope):
            self._check(scope, Headers(scope=scope))
        await self.app(scope, receive, send)

    def _changes_state(self, scope) -> bool:
        if scope["method"] in UNSAFE_METHODS:
            return True
        operation = self.routes.operation(scope["path"], scope["method"])
        return bool(operation and operation.get("x-changes-state"))

    def _check(self, scope, headers: Headers) -> None:
        claimed = headers.get("origin")
        source = "Origin"
        if claimed is None and "referer" in headers:
            claimed, source = headers["referer"], "Referer"
        if claimed is None:
            if headers.get("sec-fetch-site", "").lower() == "cross-site":
                raise Forbidden("cross-site request refused: the browser says it comes from another site")
            return
        origin = origin_of(claimed)
        if origin is None or (origin not in self.allowed and origin != self._own_origin(scope, headers)):
            raise Forbidden(f"cross-site request refused: its {source} is not this server's origin")

    @staticmethod
    def _own_origin(scope, headers: Headers) -> str | None:
        """The origin the client reached this server at: the scheme (a trusted proxy's, with --forwarded-allow-ips)
        and the Host header."""
        host = headers.get("host")
        if host is None and scope.get("server"):
            server_host, server_port = scope["server"]
            host = f"{server_host}:{server_port}"
        return origin_of(f"{scope.get('scheme', 'http')}://{host}") if host else None
