"""Where uploaded bytes live: files in a directory, named by their SHA-256 (the default), or chunks in the database
itself (`--uploads database`), which a cluster's hosts share without a shared filesystem.

Either way a file arrives in a spool (a temporary file, hashed as it is written) and is kept under its hash only
once it is complete, inside the transaction that records its Blob row. A blob is written and deleted under a lock
on its hash, so an upload of the same bytes can never meet a collection of them halfway.
"""

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from peewee import SQL, PostgresqlDatabase, fn

from .. import models
from ..core.errors import Unavailable
from ..models import Blob, BlobChunk, db

log = logging.getLogger("chat")
CHUNK_BYTES = 256 * 1024
READ_BYTES = 256 * 1024


class Spool:
    """A file on its way in: written to a temporary file and hashed as it arrives."""

    def __init__(self, file):
        self.file = file
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.sha.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self.sha.hexdigest()

    def head(self, length: int) -> bytes:
        self.file.flush()
        self.file.seek(0)
        return self.file.read(length)

    def discard(self) -> None:
        name = getattr(self.file, "name", None)
        self.file.close()
        if isinstance(name, str):
            Path(name).unlink(missing_ok=True)


def lock_blob(sha256: str) -> None:
    """On PostgreSQL, hold a transaction lock on this hash (SQLite's write transactions already take turns)."""
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sha256,))


class MissingBlob(Unavailable):
    """A blob's row is there and its bytes are not: another host's directory, or a volume that is not mounted."""

    def __init__(self, sha256: str):
        super().__init__("this server cannot reach the file's bytes; try again later", retry_after=30)
        log.error("the bytes of blob %s are missing from the upload directory", sha256)


class FileStore:
    """Blobs as files under `root`, at <first two hex digits>/<sha256>; spools in root/tmp, renamed into place."""

    name = "files"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.spools = self.root / "tmp"

    def start(self, clean: bool = True) -> None:
        """Make the directories and, with `clean`, remove the spools a crash left behind."""
        self.spools.mkdir(parents=True, exist_ok=True)
        for leftover in self.spools.iterdir() if clean else ():
            leftover.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def spool(self) -> Spool:
        return Spool(tempfile.NamedTemporaryFile(dir=self.spools, prefix="upload-", delete=False))

    @staticmethod
    def finish(spool: Spool) -> None:
        """Make the spool durable before any lock is taken: an fsync of 25 MiB must not hold up other writers."""
        spool.file.flush()
        os.fsync(spool.file.fileno())

    def keep(self, spool: Spool) -> None:
        """Call inside the transaction that holds the blob's lock: the spool becomes the blob's file."""
        spool.file.close()
        target = self.path(spool.sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(spool.file.name, target)

    def keep_bytes(self, sha256: str, data: bytes) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.spools / f"thumbnail-{sha256}"
        temporary.write_bytes(data)
        os.replace(temporary, target)

    def read(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end (inclusive) of the blob, a piece at a time; the file is opened at once, so a missing one
        is MissingBlob before any byte is promised."""
        try:
            file = open(self.path(sha256), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise MissingBlob(sha256) from None
        return self._pieces(file, start, end)

    @staticmethod
    def _pieces(file, start: int, end: int) -> Iterator[bytes]:
        with file:
            file.seek(start)
            left = end - start + 1
            while left > 0:
                piece = file.read(min(READ_BYTES, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    def forget(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class DatabaseStore:
    """Blobs as CHUNK_BYTES pieces in the blob_chunk table.

    On PostgreSQL they are bytea rows rather than large objects: rows go with the ordinary transactions, backups and
    replication that carry the rest, and a deleted row is gone with its transaction, where a large object would
    need its own unlinking (and vacuumlo for the ones a crash left behind). Spools are anonymous temporary files,
    which vanish with the process if it crashes.
    """

    name = "database"

    def start(self, clean: bool = True) -> None:
        pass

    @staticmethod
    def finish(spool: Spool) -> None:
        spool.file.flush()

    def spool(self) -> Spool:
        return Spool(tempfile.TemporaryFile(prefix="upload-"))

    def keep(self, spool: Spool) -> None:
        """Call inside the transaction that holds the blob's lock: store every chunk the blob lacks."""
        spool.file.flush()
        spool.file.seek(0)
        sha256 = spool.sha256
        have = set(BlobChunk.select(BlobChunk.seq).where(BlobChunk.sha256 == sha256).tuples())
        seq = 0
        while piece := spool.file.read(CHUNK_BYTES):
            if (seq,) not in have:
                BlobChunk.insert(sha256=sha256, seq=seq, data=piece).execute()
            seq += 1
        spool.file.close()

    def keep_bytes(self, sha256: str, data: bytes) -> None:
        have = set(BlobChunk.select(BlobChunk.seq).where(BlobChunk.sha256 == sha256).tuples())
        for seq, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES)):
            if (seq,) not in have:
                BlobChunk.insert(sha256=sha256, seq=seq, data=data[start : start + CHUNK_BYTES]).execute()

    def read(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        first, last = start // CHUNK_BYTES, end // CHUNK_BYTES
        for seq in range(first, last + 1):
            with db.connection_context():
                data = bytes(
                    BlobChunk.select(BlobChunk.data).where(BlobChunk.sha256 == sha256, BlobChunk.seq == seq).scalar()
                    or b""
                )
            offset = seq * CHUNK_BYTES
            yield data[max(start - offset, 0) : end - offset + 1]

    def forget(self, sha256: str) -> None:
        BlobChunk.delete().where(BlobChunk.sha256 == sha256).execute()


Store = FileStore | DatabaseStore


def record(sha256: str, size: int) -> None:
    """The blob's row, once its bytes are all kept (inside the same transaction)."""
    Blob.insert(sha256=sha256, size=size).on_conflict_ignore().execute()


def unused_blobs(hashes: set[str]) -> list[str]:
    """Of these hashes, the blobs no upload has as its bytes or its thumbnail any more."""
    if not hashes:
        return []
    Upload = models.Upload
    used = Upload.select(SQL("1")).where((Upload.sha256 == Blob.sha256) | (Upload.thumbnail_sha256 == Blob.sha256))
    unused = Blob.select(Blob.sha256).where(Blob.sha256.in_(sorted(hashes)), ~fn.EXISTS(used))
    return [sha for (sha,) in unused.tuples()]
