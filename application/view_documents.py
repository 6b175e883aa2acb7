"""The default view documents on disk, so a restarted API serves them at once.

``LiveViews`` writes its precomputed documents here (throttled after a refresh, and on
close) with the log position each reflects, the data time and the views' version
(``LiveViews.snapshot_version()``). A restarted process reads them back before its
population is rebuilt and serves them, marked as restored, until the live views have
caught up with them (``LiveViews.serve_saved_documents``).

One orjson file, written atomically (a temporary file, fsync, rename, fsync of the
folder), so a reader finds the previous file or the new one, never half of one. A
file that is unreadable, partial or not of this format is ignored with a log line:
it only costs the wait for the live views.

The documents are summaries (counts, credits, the top customers and prospects), so
a file keeps what the views showed when it was written: an erasure of a customer must
also rewrite or drop it (not handled yet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from application.durable_files import write_atomically

log = logging.getLogger(__name__)

FORMAT = 1  # of the file itself; the views' own versions travel in ``version``
FILE_NAME = "documents.json"

DocumentKey = tuple[str, tuple[tuple[str, Any], ...]]  # application.live_views.ViewKey


@dataclass(frozen=True)
class SavedDocument:
    key: DocumentKey
    position: int | None  # the log position the document reflects
    document: dict[str, Any]
    encoded: bytes  # the document's JSON, as served


@dataclass(frozen=True)
class SavedDocuments:
    """What a documents file holds."""

    version: str  # LiveViews.snapshot_version() of the views that computed them
    position: int | None  # the lowest position any of them reflects
    data_time: str | None
    saved_at: str  # wall clock, RFC 3339, for people reading /healthz
    documents: tuple[SavedDocument, ...]


def documents_path(data: Path) -> Path:
    """Where a process whose data folder is ``data`` keeps its view documents."""
    return Path(data) / "views" / FILE_NAME


def write_documents(
    path: Path, *, version: str, data_time: str | None, saved_at: str,
    documents: Sequence[tuple[DocumentKey, int | None, bytes]],
) -> None:
    """Replace ``path`` atomically with ``documents``: (key, position, encoded JSON) each,
    the bytes as served (not encoded again)."""
    positions = [position for _, position, _ in documents]
    position = None if not positions or None in positions else min(positions)
    header = orjson.dumps({"format": FORMAT, "version": version, "position": position, "data_time": data_time,
                           "saved_at": saved_at, "count": len(documents)})
    parts = [header[:-1], b',"documents":[']
    for index, (key, document_position, encoded) in enumerate(documents):
        if index:
            parts.append(b",")
        name, items = key
        parts.append(orjson.dumps({"view": name, "params": [list(item) for item in items],
                                   "position": document_position})[:-1])
        parts.extend((b',"document":', encoded, b"}"))
    parts.append(b"]}")
    write_atomically(path, b"".join(parts))


def read_documents(path: Path) -> SavedDocuments | None:
    """The documents saved at ``path``; None (logged) when there is no usable file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("view documents %s unreadable (%s): ignored, the views rebuild", path, error)
        return None
    try:
        found = orjson.loads(raw)
        if found.get("format") != FORMAT:
            raise ValueError(f"file format {found.get('format')!r}, expected {FORMAT}")
        items = found["documents"]
        if len(items) != found["count"]:
            raise ValueError(f"{len(items)} documents, the header says {found['count']}")
        documents = tuple(
            SavedDocument((item["view"], tuple((str(k), v) for k, v in item["params"])), item["position"],
                          item["document"], orjson.dumps(item["document"]))
            for item in items
        )
        return SavedDocuments(str(found["version"]), found["position"], found["data_time"], found["saved_at"],
                              documents)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("view documents %s ignored (partial or corrupt: %s): the views rebuild", path, error)
        return None
