"""Upload names: what a client declares, made safe to store, show and send back in a Content-Disposition."""

import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
# Bidi embeddings, overrides and isolates, and the marks, which can make "exe.pdf" read as "fdp.exe".
BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def sanitise(name: str | None) -> str:
    """The name with path separators as `_`, without control, format or bidi characters or surrounding dots and
    spaces, cut to MAX_NAME_BYTES of UTF-8 on a character boundary; `file` when nothing is left."""
    name = unicodedata.normalize("NFC", name or "")
    kept = []
    for character in name.replace("/", "_").replace("\\", "_"):
        if character in BIDI or unicodedata.category(character) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            continue
        kept.append(character)
    cleaned = "".join(kept).strip(" .")
    encoded = cleaned.encode()[:MAX_NAME_BYTES]
    cleaned = encoded.decode("utf-8", errors="ignore").strip(" .")
    return cleaned or "file"


def content_disposition(name: str, inline: bool) -> str:
    """RFC 6266: an ASCII fallback `filename` and the exact name as `filename*`."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%;' else "_" for c in name)
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def download_path(upload_id: int, name: str) -> str:
    """The URL an upload is downloaded at, with its name last so that saved files and links read well (a name that
    would be taken for the thumbnail's path is left out)."""
    quoted = quote(name, safe="")
    return f"/api/uploads/{upload_id}" if quoted == "thumbnail" else f"/api/uploads/{upload_id}/{quoted}"
