"""Reading ``POST /v1/events`` bodies: media type, size limit, time limit and content encoding.

The body is read as raw bytes (FastAPI body models would cost more than validation
itself) and parsed by ``application.decode``. Every failure here is a ``BodyError``
carrying the HTTP status and a JSON document that names what is wrong, so bad input
never becomes a 500.
"""

from __future__ import annotations

import asyncio
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
    """The lower-cased type without parameters; empty for a missing header."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def check_media_type(kind: str) -> bool:
    """True for NDJSON, False for JSON; ``BodyError`` 415 for anything else, a missing
    type included. A web page can send a body cross-site without a CORS preflight only as
    ``text/plain``, a form type, or with no type at all: refusing them keeps any page a
    user visits from writing events through the user's browser (the tracking API's
    ``text/plain`` routes carry their write key in the body instead)."""
    if kind in NDJSON_TYPES:
        return True
    if kind in JSON_TYPES or kind.endswith("+json"):
        return False
    accepted = ", ".join(JSON_TYPES + NDJSON_TYPES)
    shown = f"Content-Type {kind!r} is not accepted" if kind else "the Content-Type header is missing"
    raise BodyError(415, "unsupported_media_type", f"{shown}; use one of {accepted}")


async def read_limited(
    chunks: AsyncIterator[bytes], declared_length: str | None, limit: int, *, timeout: float | None = None
) -> bytes:
    """The whole body, refusing (413) a declared or actual size above ``limit`` bytes
    without buffering more than ``limit`` of it, and (408) a body that has not arrived
    within ``timeout`` seconds: a client trickling a byte a second holds a connection and
    a buffer for as long as it likes otherwise."""
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise BodyError(400, "bad_content_length", f"Content-Length {declared_length!r} is not a number") from None
        if declared > limit:
            raise _too_large(limit, declared)
    parts: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, None)
                parts.append(chunk)
    except TimeoutError:
        received = sum(map(len, parts))
        raise BodyError(408, "body_timeout", f"the body did not arrive within {timeout:g} s ({received} bytes came); "
                        "send it at once (TOUCHPOINTS_BODY_TIMEOUT)", received=received) from None
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
