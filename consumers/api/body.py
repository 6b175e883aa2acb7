"""Reading and parsing ``POST /v1/events`` bodies: one JSON object, a JSON array, or NDJSON.

Parsing is done here with orjson on the raw bytes (FastAPI body models would cost more
than validation itself). Every failure is a ``BodyError`` carrying the HTTP status and a
JSON document that names what is wrong, so bad input never becomes a 500.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
MAX_REPORTED = 100  # malformed NDJSON lines listed in one error


class BodyError(Exception):
    """A request body that cannot be turned into a list of items."""

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


def parse_items(body: bytes, *, ndjson: bool) -> list[Any]:
    """The items of a body: a JSON object is one item, an array its elements, NDJSON one
    per non-blank line. Empty bodies and empty arrays are refused (400)."""
    if not body.strip():
        raise BodyError(400, "empty_body", "the request body is empty; send one event, an array or NDJSON")
    if ndjson:
        return _parse_ndjson(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BodyError(
            400, "malformed_json", f"malformed JSON at line {error.lineno}, column {error.colno} "
            f"(byte offset {error.pos}): {error.msg}", line=error.lineno, column=error.colno, offset=error.pos,
        ) from None
    if isinstance(document, list):
        if not document:
            raise BodyError(400, "empty_body", "the JSON array is empty; send at least one event")
        return document
    return [document]


def _parse_ndjson(body: bytes) -> list[Any]:
    items: list[Any] = []
    malformed: list[dict[str, Any]] = []
    loads = orjson.loads
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(loads(line))
        except orjson.JSONDecodeError as error:
            if len(malformed) < MAX_REPORTED:
                malformed.append({"line": number, "column": error.colno, "reason": error.msg})
    if malformed:
        first = malformed[0]
        raise BodyError(
            400, "malformed_json", f"malformed JSON on NDJSON line {first['line']}, column {first['column']}: "
            f"{first['reason']}" + (f" (and {len(malformed) - 1} more lines)" if len(malformed) > 1 else ""),
            malformed=malformed,
        )
    if not items:
        raise BodyError(400, "empty_body", "the NDJSON body has no events")
    return items


def _too_large(limit: int, declared: int | None) -> BodyError:
    shown = f"{declared} bytes" if declared is not None else "the body"
    return BodyError(413, "body_too_large", f"{shown} exceeds the limit of {limit} bytes "
                     "(TOUCHPOINTS_MAX_BODY_BYTES); split it into several requests", limit=limit)
