"""Uploads: store a file, download it or its thumbnail, and make one your avatar."""

import anyio
from connexion.context import receive, request
from starlette.responses import JSONResponse

from ..accounts import ratelimit
from ..edge import downloads, multipart
from ..edge.offload import reads_own_body, writes
from ..files import uploads
from ..storage.engines import in_thread, query
from . import own_account


@reads_own_body
async def upload_file(user: int):
    limits = ratelimit.rate_limits
    await anyio.to_thread.run_sync(limits.hit, limits.upload, str(user))
    spool = await anyio.to_thread.run_sync(uploads.spool)
    try:
        received = await multipart.receive_file(
            receive, request.headers.get("content-type", ""), spool, uploads.settings.max_size
        )
    except BaseException:
        await anyio.to_thread.run_sync(spool.discard)
        raise
    stored = await in_thread(uploads.store, user, received.name or received.filename, received.spool)
    return JSONResponse(stored, status_code=201, headers={"Location": f"/api/uploads/{stored['id']}"})


def _validators() -> tuple[str | None, str | None]:
    """The request's Range and If-None-Match (validated against the spec already)."""
    return request.headers.get("range"), request.headers.get("if-none-match")


async def download_upload(user: int, upload_id: int):
    return downloads.serve(await query(uploads.readable, upload_id, user), *_validators())


async def download_named_upload(user: int, upload_id: int, filename: str):
    return await download_upload(user, upload_id)


async def download_thumbnail(user: int, upload_id: int):
    return downloads.serve(await query(uploads.readable, upload_id, user, True), *_validators())


@writes
def set_avatar(user: int, user_id: int, body: dict) -> dict:
    own_account(user, user_id)
    return {"user": uploads.set_avatar(user, body["upload_id"])}


@writes
def remove_avatar(user: int, user_id: int) -> dict:
    own_account(user, user_id)
    return {"user": uploads.set_avatar(user, None)}
