"""Uploads: storing one (type, name, thumbnail, quota), who may read it, attaching uploads to a message, avatars, and
collecting the uploads nothing uses any more with the blobs only they had.

Settings (CHAT_* in the environment, flags in app.py): `--uploads` (a directory, default beside the SQLite file, or
`database`), `--max-upload-size`, `--upload-quota` and `--upload-ttl`.
"""

import asyncio
import datetime
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from peewee import SQL, PostgresqlDatabase, fn

from ..core.errors import Conflict, NotFound, PayloadTooLarge
from ..core.settings import size
from ..core.times import seconds, utcnow
from ..models import Attachment, Blob, Event, Membership, Message, Upload, User, avatar_url, db
from ..storage.batches import BATCH_ROWS, in_batches
from ..storage.engines import in_thread
from ..storage.queries import PLAIN, Post
from . import filenames, images, stores

log = logging.getLogger("chat")
DEFAULTS = {
    "CHAT_UPLOADS": "",
    "CHAT_MAX_UPLOAD_SIZE": "25M",
    "CHAT_UPLOAD_QUOTA": "1G",
    "CHAT_UPLOAD_TTL": "24h",
}
MAX_ATTACHMENTS = 10
# An upload that was used and is used no more is collected only this long after its last use: a send that takes it
# up again meanwhile (it sets used_at) is never beaten to it.
REUSE_GRACE = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class Settings:
    store: stores.Store
    max_size: int
    quota: int
    ttl: datetime.timedelta


settings: Settings | None = None


def default_directory(database_url: str) -> Path:
    """Beside the SQLite file (chat.db: chat-uploads/); for PostgreSQL, uploads/ in the working directory."""
    parsed = urlparse(database_url)
    if parsed.scheme.startswith("sqlite") and parsed.path not in ("", "/", "/:memory:"):
        database = Path(parsed.path[1:])
        return database.with_name(f"{database.stem}-uploads")
    return Path("uploads")


def configure(env, database_url: str, clean: bool = True) -> Settings:
    """Settings from the environment; ValueError for a bad one. The store's directories are made here and, with
    `clean`, the spools a crash left are removed: by `chat-server` before its workers start, never by a worker,
    whose siblings may be receiving uploads."""
    global settings
    value = {**DEFAULTS, **{k: v for k, v in env.items() if k in DEFAULTS}}
    where = value["CHAT_UPLOADS"].strip()
    if where == "database":
        store = stores.DatabaseStore()
    else:
        store = stores.FileStore(where or default_directory(database_url))
    settings = Settings(
        store=store,
        max_size=size(value["CHAT_MAX_UPLOAD_SIZE"]),
        quota=size(value["CHAT_UPLOAD_QUOTA"]),
        ttl=datetime.timedelta(seconds=seconds(value["CHAT_UPLOAD_TTL"])),
    )
    store.start(clean)
    return settings


def spool() -> stores.Spool:
    return settings.store.spool()


def as_json(upload: Upload) -> dict:
    """An upload as POST /api/uploads answers it (the Upload schema)."""
    return {
        "id": upload.id,
        "name": upload.name,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": upload.sha256,
        "url": filenames.download_path(upload.id, upload.name),
        "width": upload.width,
        "height": upload.height,
        "thumbnail_url": None if upload.thumbnail_sha256 is None else f"/api/uploads/{upload.id}/thumbnail",
    }


def attachment_json(upload: Upload) -> dict:
    """An upload as a message carries it (the Attachment schema)."""
    shown = as_json(upload)
    del shown["sha256"]
    return shown


def store(owner_id: int, name: str | None, spool: stores.Spool) -> dict:
    """Keep a complete spool as the owner's upload: its type from its bytes, an image's thumbnail, within the quota.

    Runs in a thread: it reads the file again (type and thumbnail) and writes it into the store.
    """
    try:
        content_type = images.sniff(spool.head(images.SNIFF_BYTES))
        spool.file.seek(0)
        picture = images.picture(spool.file, content_type)
        if content_type in images.INLINE_TYPES and picture is None:
            content_type = images.UNKNOWN  # it claims to be an image and is not one: never shown inline
        thumbnail = None if picture is None else picture.thumbnail
        thumbnail_sha = None if thumbnail is None else hashlib.sha256(thumbnail).hexdigest()
        sha256 = spool.sha256
        settings.store.finish(spool)
        with db.atomic():
            _charge(owner_id, spool.size)
            for blob in sorted({sha256, thumbnail_sha} - {None}):  # in order: two uploads never wait on each other
                stores.lock_blob(blob)
            settings.store.keep(spool)
            stores.record(sha256, spool.size)
            if thumbnail is not None:
                settings.store.keep_bytes(thumbnail_sha, thumbnail)
                stores.record(thumbnail_sha, len(thumbnail))
            upload = Upload.create(
                owner_id=owner_id,
                name=filenames.sanitise(name),
                content_type=content_type,
                size=spool.size,
                sha256=sha256,
                width=None if picture is None else picture.width,
                height=None if picture is None else picture.height,
                thumbnail_sha256=thumbnail_sha,
            )
        return as_json(upload)
    finally:
        spool.discard()


def _charge(owner_id: int, size: int) -> None:
    """Refuse an upload that would take the owner past the quota; on PostgreSQL the owner's uploads take turns."""
    if isinstance(db.obj, PostgresqlDatabase):
        User.select(User.id).where(User.id == owner_id).for_update().execute()
    used = Upload.select(fn.COALESCE(fn.SUM(Upload.size), 0)).where(Upload.owner_id == owner_id).scalar()
    left = max(settings.quota - int(used), 0)
    if size > left:
        raise PayloadTooLarge(f"the file is {size} bytes and {left} bytes are left of your upload quota")


@dataclass(frozen=True)
class Readable:
    """What serving an upload needs: which blob, how large, of what type, under which name."""

    sha256: str
    size: int
    content_type: str
    name: str
    inline: bool


def readable(upload_id: int, user_id: int, thumbnail: bool = False) -> Readable:
    """The upload (or its thumbnail) if this user may read it: its uploader, a current member of a chat in which a
    message carries it, or anyone when it is someone's avatar. NotFound for anyone else, as for no upload at all."""
    in_my_chats = (
        Attachment.select(SQL("1"))
        .join(Message, on=(Message.id == Attachment.message))
        .join(Membership, on=(Membership.chat == Message.chat))
        .where(Attachment.upload == Upload.id, Membership.user == user_id)
    )
    avatar = User.select(SQL("1")).where(User.avatar_upload_id == Upload.id)
    upload = Upload.get_or_none(
        Upload.id == upload_id, (Upload.owner_id == user_id) | fn.EXISTS(in_my_chats) | fn.EXISTS(avatar)
    )
    if upload is None:
        raise NotFound(f"upload {upload_id} does not exist")
    if thumbnail:
        if upload.thumbnail_sha256 is None:
            raise NotFound(f"upload {upload_id} is not an image and has no thumbnail")
        thumb_size = Blob.select(Blob.size).where(Blob.sha256 == upload.thumbnail_sha256).scalar()
        name = f"{Path(upload.name).stem or 'image'}-thumbnail.webp"
        return Readable(upload.thumbnail_sha256, thumb_size, images.THUMBNAIL_TYPE, name, True)
    inline = upload.content_type in images.INLINE_TYPES and upload.width is not None
    return Readable(upload.sha256, upload.size, upload.content_type, upload.name, inline)


def read(sha256: str, start: int, end: int):
    return settings.store.read(sha256, start, end)


def _take_up(owner_id: int, upload_ids: list[int]) -> list[Upload]:
    """The owner's uploads by these ids, in that order, marked as used (inside the caller's transaction);
    NotFound when one is not an upload of theirs."""
    query = Upload.select().where(Upload.id.in_(upload_ids), Upload.owner_id == owner_id)
    found = {upload.id: upload for upload in query}
    missing = [upload_id for upload_id in upload_ids if upload_id not in found]
    if missing:
        raise NotFound(f"upload {missing[0]} is not one of your uploads")
    Upload.update(used_at=utcnow()).where(Upload.id.in_(upload_ids)).execute()
    return [found[upload_id] for upload_id in upload_ids]


class _NotSent(Exception):
    """The sender is not a member: nothing of the send may stay."""


def send(chat_id: int, sender_id: int, content: str, upload_ids: list[int], post: Post = PLAIN) -> int | None:
    """Send a message that carries these uploads of the sender's (Message.send); its id, else None when the sender
    is not a member."""
    if not upload_ids:
        return Message.send(chat_id, sender_id, content, post=post)
    try:
        with db.atomic():
            uploads = _take_up(sender_id, upload_ids)
            attachments = json.dumps([attachment_json(upload) for upload in uploads], ensure_ascii=False)
            message_id = Message.send(chat_id, sender_id, content, attachments, post)
            if message_id is None:
                raise _NotSent
            rows = [{"message": message_id, "upload": upload.id, "position": n} for n, upload in enumerate(uploads)]
            Attachment.insert_many(rows).execute()
    except _NotSent:
        return None
    return message_id


def set_avatar(user_id: int, upload_id: int | None) -> dict:
    """Make one of the user's image uploads their avatar (None: remove it), and tell the members of their chats."""
    with db.atomic():
        if upload_id is not None:
            (upload,) = _take_up(user_id, [upload_id])
            if upload.thumbnail_sha256 is None:
                raise Conflict(f"upload {upload_id} is not an image")
        User.update(avatar_upload_id=upload_id).where(User.id == user_id).execute()
        user = User.get_by_id(user_id)
        Event.user_updated(user_id, user.name, avatar_url(upload_id))
    return user.as_dict()


def collect(now: datetime.datetime | None = None) -> int:
    """Delete the uploads nothing uses, and the blobs only they had, a batch per transaction; how many uploads."""
    now = now or utcnow()
    total = 0

    def step() -> bool:
        nonlocal total
        attached = Attachment.select(SQL("1")).where(Attachment.upload == Upload.id)
        avatar = User.select(SQL("1")).where(User.avatar_upload_id == Upload.id)
        never_used = Upload.used_at.is_null() & (Upload.created_at < now - settings.ttl)
        used_before = Upload.used_at.is_null(False) & (Upload.used_at < now - REUSE_GRACE)
        rows = list(
            Upload.select(Upload.id, Upload.sha256, Upload.thumbnail_sha256)
            .where(never_used | used_before, ~fn.EXISTS(attached), ~fn.EXISTS(avatar))
            .order_by(Upload.id)
            .limit(BATCH_ROWS)
            .tuples()
        )
        if not rows:
            return False
        Upload.delete().where(Upload.id.in_([row[0] for row in rows])).execute()
        hashes = {sha for _, content, thumbnail in rows for sha in (content, thumbnail) if sha}
        for sha in sorted(hashes):
            stores.lock_blob(sha)
        for sha in stores.unused_blobs(hashes):
            settings.store.forget(sha)
            Blob.delete().where(Blob.sha256 == sha).execute()
        total += len(rows)
        return len(rows) == BATCH_ROWS

    in_batches(step)
    return total


async def collect_forever() -> None:
    """Collect unused uploads every tenth of --upload-ttl, at most a minute apart, for as long as the server runs."""
    interval = min(settings.ttl.total_seconds() / 10, 60.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await in_thread(collect)
        except Exception:  # a database that is down now may be back next time
            log.exception("collecting unused uploads failed")
