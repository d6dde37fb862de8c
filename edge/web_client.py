"""The web chat client: the files of web/ served at `/` beside the API, under a strict Content-Security-Policy."""

from pathlib import Path

from starlette.responses import FileResponse, JSONResponse

# Shipped as package data beside this module (pyproject.toml), found from __file__ like the spec in app.py.
WEB = Path(__file__).parent.parent / "web"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page's own files only: no inline script or style, no eval, nothing from another origin. Trusted Types with no
# policy make every HTML sink (innerHTML and its kin) throw, so text from the API can only ever become text. Forms
# are sent by the scripts; `form-action 'none'` keeps a form from ever submitting itself (a password in a URL).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
IGNORED_HEADERS = (b"range", b"if-range")


def web_files(root: Path = WEB) -> dict[str, tuple[Path, str]]:
    """URL path -> (file, content type) for every servable file right in root (not in its subfolders, so that no
    `web/api/...` could ever answer inside the API's /api/); `/` is the index. Only these exact paths are served, so
    no request can name a file outside the folder."""
    files = {
        f"/{path.name}": (path, CONTENT_TYPES[path.suffix])
        for path in sorted(root.glob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES
    }
    files["/"] = files[f"/{INDEX}"]
    return files


class WebClient:
    """ASGI middleware: GET and HEAD of a web/ file are answered here, any other method with a JSON 405; every other
    path goes on to the API, so an unknown one still gets the API's JSON 404."""

    def __init__(self, app, root: Path = WEB):
        self.app = app
        self.files = web_files(root)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.files:
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            path, content_type = self.files[scope["path"]]
            # The files are small, so a Range is ignored (RFC 9110 allows it) and the whole file sent: Starlette
            # would answer a malformed one with a plain-text 400 or 416, not the API's {"error"}.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k not in IGNORED_HEADERS]}
            response = FileResponse(path, media_type=content_type, headers=HEADERS)
        else:
            response = JSONResponse(
                {"error": f"{scope['method']} is not allowed here"}, status_code=405, headers={"Allow": "GET, HEAD"}
            )
        await response(scope, receive, send)
