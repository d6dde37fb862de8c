"""Serving an upload's bytes: cache validation (ETag, If-None-Match), one byte range (206, 416), and the headers that
keep a file from running as a page of this origin (sandbox, nosniff, attachment for all but safe raster images)."""

import re

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from ..core.errors import RangeNotSatisfiable
from ..files import filenames, uploads

PRIVATE = "private, max-age=0, must-revalidate"
SANDBOX = "sandbox; default-src 'none'"
RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
# Types a browser would run as a document if it ever ignored the attachment disposition: sent as bytes instead.
SCRIPTABLE = {"text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml", "text/javascript"}


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte `Range: bytes=a-b`, `a-` or `-n` names; RangeNotSatisfiable past the end; None for a
    header of another form, which is ignored (RFC 9110: another unit, several ranges, or nonsense)."""
    match = RANGE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "" and int(last) > 0 and size > 0:
        return max(size - int(last), 0), size - 1
    if first != "" and int(first) < size and (last == "" or int(last) >= int(first)):
        return int(first), min(int(last), size - 1) if last != "" else size - 1
    raise RangeNotSatisfiable(f"the range {header.strip()!r} is not within the file's {size} bytes", size)


def matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def serve(file: uploads.Readable, range_header: str | None, if_none_match: str | None) -> Response:
    etag = f'"{file.sha256}"'
    if if_none_match is not None and matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": PRIVATE})
    content_type = "application/octet-stream" if file.content_type in SCRIPTABLE else file.content_type
    headers = {
        "ETag": etag,
        "Cache-Control": PRIVATE,
        "Content-Security-Policy": SANDBOX,
        "Content-Disposition": filenames.content_disposition(file.name, file.inline),
        "Accept-Ranges": "bytes",
    }
    status, first, last = 200, 0, file.size - 1
    asked = None if range_header is None else byte_range(range_header, file.size)
    if asked is not None:
        (first, last), status = asked, 206
        headers["Content-Range"] = f"bytes {first}-{last}/{file.size}"
    headers["Content-Length"] = str(last - first + 1)
    if last < first:  # an empty file
        return Response(b"", status_code=status, media_type=content_type, headers=headers)
    pieces = iterate_in_threadpool(uploads.read(file.sha256, first, last))
    return StreamingResponse(pieces, status_code=status, media_type=content_type, headers=headers)
