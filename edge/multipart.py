"""An upload's multipart/form-data body, parsed as it arrives (python-multipart): the file part goes straight into a
spool (files/stores.py), hashed as it is written, 256 KiB at a time in the threadpool; the small `name` field is kept
in memory. Nothing holds the whole body, and nothing reads it on the event loop in one piece."""

from dataclasses import dataclass

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from ..core.errors import BadRequest, PayloadTooLarge
from .request_limits import drain

# Each upload holds at most this much (and what is in flight) before a thread writes it: ten uploads at 1 MiB grew
# the server by 26 MiB, at 256 KiB by 12-15 MiB, for the same speed (BENCHMARKS.md).
WRITE_BYTES = 256 * 1024
MAX_FIELD_BYTES = 4096  # `name`: up to 1,024 characters of UTF-8
MAX_PART_HEADER_BYTES = 8192
FIELDS = ("file", "name")


@dataclass
class Received:
    spool: object
    filename: str | None
    name: str | None


class _Parts:
    """python-multipart's callbacks, collecting what each part brought since the last chunk was fed."""

    def __init__(self, spool, max_bytes: int):
        self.spool, self.max_bytes = spool, max_bytes
        self.pending = bytearray()  # file bytes not yet written
        self.file_bytes = 0
        self.seen: set[str] = set()
        self.current: str | None = None
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.header_bytes = 0
        self.disposition = b""
        self.field = bytearray()
        self.filename: str | None = None
        self.name: str | None = None
        self.file_ended = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.current, self.disposition, self.header_bytes = None, b"", 0
        self.field.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def _count_header(self, length: int) -> None:
        self.header_bytes += length
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise BadRequest(f"a part's headers are over {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        if bytes(self.header_name).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = _text(options.get(b"name"))
        if name not in FIELDS:
            raise BadRequest("a part has no name" if name is None else f"this operation takes no form field {name}")
        if name in self.seen:
            raise BadRequest(f"the form field {name} is sent twice; send it once")
        self.seen.add(name)
        self.current = name
        if name == "file":
            self.filename = _text(options.get(b"filename"))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current == "file":
            self.file_bytes += end - start
            if self.file_bytes > self.max_bytes:
                raise PayloadTooLarge(f"the file is larger than {self.max_bytes} bytes")
            self.pending += data[start:end]
        else:
            self.field += data[start:end]
            if len(self.field) > MAX_FIELD_BYTES:
                raise BadRequest(f"the form field {self.current} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self.current == "file":
            self.file_ended = True
        if self.current == "name":
            self.name = _text(bytes(self.field))
            if self.name is None:
                raise BadRequest("the form field name is not valid UTF-8")
            if len(self.name) > 1024:
                raise BadRequest("the form field name is longer than 1024 characters")


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def receive_file(receive, content_type: str, spool, max_bytes: int) -> Received:
    """Read the body into `spool`; its `file` part's bytes, filename and the `name` field. BadRequest for a body
    that is not one such form, PayloadTooLarge for a file over `max_bytes` (the rest is drained, so that the client
    reads the answer). The caller discards the spool if this raises."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("a multipart/form-data body needs a boundary in its Content-Type")
    parts = _Parts(spool, max_bytes)
    parser = MultipartParser(boundary, parts.callbacks())
    more = True
    try:
        while more:
            message = await receive()  # over the body's cap, request_limits.py drains and refuses it
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            more = message.get("more_body", False)
            try:
                parser.write(message.get("body", b""))
            except PayloadTooLarge:
                if more:  # read the rest (up to a bound), so that the client reads the answer
                    await drain(receive)
                raise
            if len(parts.pending) >= WRITE_BYTES or (not more and parts.pending):
                chunk, parts.pending = parts.pending, bytearray()  # handed over, not copied
                await anyio.to_thread.run_sync(spool.write, chunk)
        parser.finalize()
        if parts.pending:
            await anyio.to_thread.run_sync(spool.write, bytes(parts.pending))
    except FormParserError:
        raise BadRequest("the multipart/form-data body is malformed") from None
    if not parts.file_ended:
        raise BadRequest("the form has no file part" if "file" not in parts.seen else "the body ends inside the file")
    return Received(spool, parts.filename, parts.name)
