"""Reading ``POST /v1/events`` bodies: media type, size limit and content encoding.

The body is read as raw bytes (FastAPI body models would cost more than validation
itself) and parsed by ``application.decode``. Every failure here is a ``BodyError``
carrying the HTTP status and a JSON document that names what is wrong, so bad input
never becomes a 500.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


class BodyError(Exception):
    """A request body refused before it is parsed: its type, size or encoding."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any):
        self.status = status
        self.document = {"error": error, "detail": detail, **extra, "accepted": 0}
        super().__init__(detail)


def media_type(content_type: str | None) -> str:
    """``application/json`` for a missing header, else the lower-cased type without parameters."""
    if not content_type:
        return "application/json"
    return content_type.split(";", 1)[0].strip().lower()


def check_media_type(kind: str) -> bool:
    """True for NDJSON, False for JSON; ``BodyError`` 415 for anything else."""
    if kind in NDJSON_TYPES:
        return True
    if kind in JSON_TYPES or kind.endswith("+json"):
        return False
    accepted = ", ".join(JSON_TYPES + NDJSON_TYPES)
    raise BodyError(415, "unsupported_media_type", f"Content-Type {kind!r} is not accepted; use one of {accepted}")


async def read_limited(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The whole body, refusing (413) a declared or actual size above ``limit`` bytes
    without buffering more than ``limit`` of it."""
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise BodyError(400, "bad_content_length", f"Content-Length {declared_length!r} is not a number") from None
        if declared > limit:
            raise _too_large(limit, declared)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, None)
        parts.append(chunk)
    return b"".join(parts)


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip`` (or ``deflate``), refusing (413) output above ``limit``
    bytes without inflating more than that; other encodings are a 415."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, "unsupported_content_encoding",
                        f"Content-Encoding {name!r} is not accepted; use gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise BodyError(400, "bad_content_encoding", f"the {name} body cannot be decompressed: {error}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise _too_large(limit, None)
    return inflated


def _too_large(limit: int, declared: int | None) -> BodyError:
    shown = f"{declared} bytes" if declared is not None else "the body"
    return BodyError(413, "body_too_large", f"{shown} exceeds the limit of {limit} bytes "
                     "(TOUCHPOINTS_MAX_BODY_BYTES); split it into several requests", limit=limit)
