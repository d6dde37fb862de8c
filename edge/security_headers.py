"""The headers every response carries, whatever produced it: the API, an error, Swagger UI or the web client."""

# Nothing between client and server may keep a copy (sessions, history and emails are private); browsers must not
# guess a content type other than the declared one; no other site may frame a page of this server (Swagger UI's
# "Try it out" buttons would otherwise be clickjacking targets); and a page here tells no other site its URL
# (`same-origin`, not `no-referrer`, under which a form's POST says `Origin: null` and csrf.py refuses it).
HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_NAMES = {name for name, _ in HEADERS}


# A download (edge/downloads.py) may be kept by the client's own cache, never a shared one; nothing else may.
PRIVATE_CACHE = b"private, max-age=0, must-revalidate"


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers with HEADERS in place of any the app set under the same names, but a download's
    private Cache-Control."""
    private = (b"cache-control", PRIVATE_CACHE) in headers
    fixed = [header for header in HEADERS if not (private and header[0] == b"cache-control")]
    kept = (h for h in headers if h[0].lower() not in _NAMES or (private and h[0] == b"cache-control"))
    return [*kept, *fixed]


class SecurityHeaders:
    """ASGI middleware that adds HEADERS to every HTTP response, error responses included (it sits outside
    Connexion's exception handling)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_security_headers(list(message.get("headers", [])))}
            await send(message)

        await self.app(scope, receive, send_with_headers)
