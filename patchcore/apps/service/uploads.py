"""An uploaded image, from request bytes to an RGB picture: capped in bytes and pixels, formats allow-listed.

Everything here treats the request as hostile: the body is counted as it arrives, the multipart
parser keeps the file in memory (a spooled file would land in the system's temp folder), and
the decoder only tries the formats the pipeline reads.
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from patchcore.datasets.images import MAX_PIXELS
from patchcore.runtime.patchcore_onnx import to_rgb

MAX_BYTES = 32 * 1024 * 1024
FORMATS = ("PNG", "JPEG", "BMP", "TIFF")  # what the data sets may hold (datasets.layout.IMAGE_SUFFIXES)
SUFFIX = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif"}
MAX_NAME = 200


class Rejected(Exception):
    """A request the service refuses: its HTTP status and one line saying what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    name: str  # the client's file name, reported back and never used as a path
    data: bytes
    image: Image.Image  # RGB, decoded in full
    suffix: str  # from the decoded format, never from the name


async def capped_body(stream: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The request body, refused (413) once it passes ``limit`` bytes.

    Past the limit the rest is read and dropped, up to twice the limit, so that an ordinary
    client gets the 413 instead of a reset connection; a larger body is cut off.
    """
    too_big = Rejected(
        413,
        f"the upload is over the {limit // (1024 * 1024)} MB limit; send a smaller image (or start serve with a larger --max-upload-mb)",
    )
    if declared is not None and declared.isdigit() and int(declared) > 2 * limit:
        raise too_big
    parts, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > 2 * limit:
            break
        if size <= limit:
            parts.append(chunk)
    if size > limit:
        raise too_big
    return b"".join(parts)


class _InMemory(MultiPartParser):
    spool_max_size = MAX_BYTES + 1  # never roll over to a temporary file


async def _one_chunk(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def file_part(body: bytes, headers: Headers) -> tuple[str, bytes]:
    """The multipart field ``file``: its file name and bytes."""
    try:
        form = await _InMemory(headers, _one_chunk(body), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise Rejected(
            400, f"the multipart body could not be read ({exc.message}); send one image in the field 'file'"
        ) from None
    part = form.get("file")
    if not isinstance(part, UploadFile):
        raise Rejected(
            400,
            "the multipart body has no file field 'file'; send the image as -F file=@image.png (or as the raw body)",
        )
    return part.filename or "upload", await part.read()


def decoded(name: str, data: bytes, max_pixels: int = MAX_PIXELS) -> Upload:
    """Decode ``data`` in full, or refuse it: not an allowed format (415), too many pixels (413), damaged (400)."""
    name = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())[:MAX_NAME] or "upload"
    if not data:
        raise Rejected(400, "the upload is empty; send a PNG, JPEG, BMP or TIFF image")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise Rejected(
                    413,
                    f"{name}: {image.width} x {image.height} pixels is beyond the {max_pixels} pixel limit; send a smaller image",
                )
            fmt = str(image.format)
            image.load()
            return Upload(name, data, to_rgb(image), SUFFIX[fmt])
    except UnidentifiedImageError:
        raise Rejected(415, f"{name}: not a PNG, JPEG, BMP or TIFF image; send one of those formats") from None
    except Rejected:
        raise
    except Image.DecompressionBombError:
        raise Rejected(
            413, f"{name}: beyond the {max_pixels} pixel limit (a decompression bomb?); send a smaller image"
        ) from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for a damaged file
        raise Rejected(
            400,
            f"{name}: not a readable image ({exc.__class__.__name__}: {str(exc)[:120]}); the file is damaged or truncated",
        ) from None
