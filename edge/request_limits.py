"""Limits on what one request may make the server parse: query parameters, and a body-size cap whose 413 the
client can read."""

from ..core.errors import BadRequest, PayloadTooLarge

MAX_BODY_BYTES = 256 * 1024
# No operation declares more than three query parameters but one whose array repeats (GET /api/presence's
# user_ids, up to 100): QueryParameterLimit allows each what it declares. Connexion's parsing is quadratic in them.
MAX_QUERY_PARAMETERS = 16
# An oversized body is read and thrown away up to this much before the 413 goes out: a client that is still
# sending when the server closes sees a connection reset instead of the answer. Beyond it, the server closes.
MAX_DRAIN_BYTES = 8 * 1024 * 1024


async def drain(receive, already: int = 0) -> None:
    """Read and discard the rest of a request body, up to MAX_DRAIN_BYTES in all."""
    drained = already
    while drained <= MAX_DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodySizeLimit:
    """Refuse request bodies over a cap before anything reads them into memory.

    A chunked body (no Content-Length) is read here, up to the cap, and handed on with a
    Content-Length: Connexion treats a request without one as having no body at all.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, streamed: dict[tuple[str, str], int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # (method, path) of the operations whose handlers read their body as it arrives (uploads), with their cap.
        self.streamed = streamed or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        cap = self.streamed.get((scope["method"], scope["path"]))
        max_bytes = self.max_bytes if cap is None else cap
        if length is not None and length.isdigit() and int(length) > max_bytes:
            # A client waiting for "100 Continue" has sent nothing yet: reading would invite the whole body.
            if int(length) <= MAX_DRAIN_BYTES and headers.get(b"expect", b"").lower() != b"100-continue":
                await drain(receive)
            raise self.too_large(max_bytes)
        limited = self.limited(receive, max_bytes)
        if cap is not None:  # read as it arrives, never gathered here
            return await self.app(scope, limited, send)
        if length is None and headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            more = True
            while more:
                message = await limited()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            scope = {**scope, "headers": [*scope["headers"], (b"content-length", str(len(body)).encode())]}
            limited = self.replay(bytes(body), receive)
        await self.app(scope, limited, send)

    @staticmethod
    def too_large(max_bytes: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")

    def limited(self, receive, max_bytes: int):
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                if message.get("more_body", False):
                    await drain(receive, received)
                raise self.too_large(max_bytes)
            return message

        return limited_receive

    @staticmethod
    def replay(body: bytes, receive):
        sent = False

        async def replay_receive():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay_receive


class QueryParameterLimit:
    """Refuse a query string with more parameters than its operation takes, before anything parses it: at most
    MAX_QUERY_PARAMETERS, or what the operation declares when that is more (an array parameter that repeats counts
    its maxItems)."""

    def __init__(self, app, routes=None, spec: dict | None = None, max_parameters: int = MAX_QUERY_PARAMETERS):
        self.app = app
        self.routes, self.spec = routes, spec or {}
        self.max_parameters = max_parameters

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            if query and query.count(b"&") >= self.max_parameters:
                allowed = self._allowed(scope["path"], scope["method"])
                if query.count(b"&") >= allowed:
                    raise BadRequest(f"too many query parameters: at most {allowed}")
        await self.app(scope, receive, send)

    def _allowed(self, path: str, method: str) -> int:
        operation = self.routes.operation(path, method) if self.routes is not None else None
        declared = 0
        for parameter in (operation or {}).get("parameters", []):
            if "$ref" in parameter:
                parameter = self._resolve(parameter["$ref"])
            if parameter.get("in") == "query":
                schema = parameter.get("schema", {})
                declared += schema.get("maxItems", 1) if schema.get("type") == "array" else 1
        return max(self.max_parameters, declared)

    def _resolve(self, ref: str) -> dict:
        node = self.spec
        for part in ref.removeprefix("#/").split("/"):
            node = node.get(part, {})
        return node
