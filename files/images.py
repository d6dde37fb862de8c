"""What the bytes of an upload are: a content type sniffed from them (puremagic), and for JPEG, PNG, GIF and WebP
images their size and a thumbnail (Pillow), made without trusting anything the client said."""

import io
import threading
import warnings
from dataclasses import dataclass

import puremagic
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import BadRequest

THUMBNAIL_SIZE = (400, 400)
THUMBNAIL_TYPE = "image/webp"
# An image of more pixels is refused before it is decoded: decoding takes about 4 bytes a pixel.
MAX_PIXELS = 40_000_000
# The raster types a browser may show inline; each is shown only once Pillow has decoded it as that type.
INLINE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
SNIFF_BYTES = 8192
UNKNOWN = "application/octet-stream"
# One image is decoded at a time per process, so that ten uploads of large images take one image's memory.
_decoding = threading.Lock()


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    thumbnail: bytes


def sniff(head: bytes) -> str:
    """The content type the first bytes of a file show, or application/octet-stream."""
    if not head:
        return UNKNOWN
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return UNKNOWN
    return next((match.mime_type for match in matches if match.mime_type), UNKNOWN)


def picture(path_or_file, content_type: str) -> Picture | None:
    """The image's size and thumbnail when the file decodes as the raster type it was sniffed as; None when it
    is no such image (it is then served as an attachment); BadRequest for one of more than MAX_PIXELS."""
    expected = INLINE_TYPES.get(content_type)
    if expected is None:
        return None
    with _decoding, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path_or_file, formats=[expected]) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise BadRequest(f"the image has {width} by {height} pixels; at most {MAX_PIXELS:,} are taken")
                return Picture(width, height, _thumbnail(image))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadRequest(f"the image has too many pixels; at most {MAX_PIXELS:,} are taken") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            return None


def _thumbnail(image: Image.Image) -> bytes:
    """A WebP (transparency kept) of at most THUMBNAIL_SIZE, upright (EXIF orientation applied), of the first frame,
    with no metadata."""
    image.draft("RGB", THUMBNAIL_SIZE)  # a JPEG decodes at a fraction of its size
    image.seek(0)
    upright = ImageOps.exif_transpose(image)
    upright.thumbnail(THUMBNAIL_SIZE)
    transparent = upright.mode in ("RGBA", "LA", "P", "PA") or "transparency" in upright.info
    out = io.BytesIO()
    upright.convert("RGBA" if transparent else "RGB").save(out, "WEBP", quality=80)
    return out.getvalue()
