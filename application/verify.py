"""Verification of the log: the hash chain recomputed from the stored bytes.

The store keeps, with each event, ``hash = chain(previous event's hash, canonical
bytes of this event)`` (``events.hashing``). ``verify_log`` recomputes every link from
the columns as stored -- never from re-encoded models, which could hide a change -- and
also checks that positions increase (and, on the SQLite store, have no holes) and that
every stream's versions run 0, 1, 2... without gaps.

What a finding means, at the first position concerned:

- ``altered``: the event's stored bytes (or its stored hash) are not what was chained;
- ``removed``: events are missing before it (a hole in the positions or in a stream's
  versions; the chain does not continue from the event before);
- ``reordered``: the event is intact but stored elsewhere than where it was chained
  (two rows swapped, a row moved);
- ``truncated``: the head hash an auditor noted earlier (``expect_head``) is nowhere in
  the log: events were removed from its end, or the whole chain was recomputed.

A change in the middle breaks the link at the changed event only (later events chain
from the *stored* hashes), so each finding is reported where it happened. Removing
the newest events leaves a valid shorter chain: only a noted head detects that, so an
auditor writes down the head hash ``verify`` prints and passes it back later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from events.raw import RawReader, read_raw
from events.hashing import GENESIS
from events.store import EventStore
from events.times import utc_text_of_micros

Progress = Callable[[int], None]
FINDINGS_KEPT = 100  # findings listed in full; the rest are counted
SUSPECTS_COMPARED = 1000  # chain breaks cross-checked for moved events
_sha256 = hashlib.sha256


class VerifyUnsupported(Exception):
    """The store keeps no hash chain to verify."""


@dataclass(frozen=True)
class Finding:
    """One place where the log is not what was chained."""

    position: int
    kind: str  # altered | removed | reordered | truncated
    detail: str
    stream: str | None = None
    stream_version: int | None = None
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position, "kind": self.kind, "detail": self.detail, "stream": self.stream,
            "stream_version": self.stream_version, "event_id": self.event_id,
        }


@dataclass
class VerifyReport:
    events: int = 0
    first_position: int | None = None
    last_position: int | None = None
    head_hash: bytes = GENESIS  # the stored hash of the newest event: what an auditor notes
    findings: list[Finding] = field(default_factory=list)  # in position order, the first FINDINGS_KEPT
    problems: int = 0
    expected_head: str | None = None
    expected_head_position: int | None = None  # where the noted head is in the log
    appended_since_expected: int | None = None  # events after it

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "head_hash": self.head_hash.hex(),
            "problems": self.problems,
            "findings": [finding.as_dict() for finding in self.findings],
            "expected_head": self.expected_head,
            "expected_head_position": self.expected_head_position,
            "appended_since_expected": self.appended_since_expected,
        }


@dataclass
class _Break:
    """A link of the chain that does not hold (kept to classify it after the scan)."""

    position: int
    canonical: bytes | None  # None: the row could not even be read
    stored: bytes
    previous: bytes  # the stored hash of the event before
    stream: str | None
    version: Any
    event_id: str | None
    version_note: str = ""  # what the stream versions say at this event
    gap: tuple[int, int] | None = None  # missing positions just before it (dense stores)
    unreadable: str = ""


def parse_head(text: str) -> str:
    """A noted head hash: 64 hex digits (an optional ``sha256:`` prefix is dropped)."""
    value = text.strip().lower().removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"expected a head hash of 64 hex digits, got {text!r}")
    return value


def verify_log(store: EventStore, *, expect_head: str | None = None, progress: Progress | None = None) -> VerifyReport:
    """Recompute the whole chain; see the module docstring for what the findings mean."""
    report = VerifyReport(expected_head=parse_head(expect_head) if expect_head else None)
    dense = isinstance(store, RawReader)  # its positions are dense: a hole is a removal
    _scan(_links(store, progress), report, dense)
    if report.expected_head is not None and report.expected_head_position is None:
        _add(report, Finding((report.last_position or 0) + 1, "truncated",
                             f"the noted head {report.expected_head} is not in the log: events were removed from "
                             "its end, or the chain was recomputed after a change"))
    report.findings.sort(key=lambda finding: finding.position)
    return report


# --- reading the links -------------------------------------------------------------------------

# (position, stream, stream_version, event_id text, canonical bytes or None, stored hash, unreadable reason)
Link = tuple[int, Any, Any, "str | None", "bytes | None", bytes, str]


def _links(store: EventStore, progress: Progress | None) -> Iterator[Link]:
    """Canonical bytes rebuilt from the raw columns (``events.raw.read_raw``: native on
    SQLite, adapted from ``read_all`` elsewhere), byte-identical to
    ``events.hashing.canonical_bytes`` (``tests/application/test_verify.py`` checks)."""
    dumps = orjson.dumps
    recorded_us, recorded_text = None, ""
    for rows, names in read_raw(store, 0):
        for position, stream_id, version, event_id, type_name, schema_version, occurred, recorded, data, metadata, \
                stored in rows:
            stream = names.get(stream_id)
            try:
                if recorded != recorded_us:
                    recorded_us, recorded_text = recorded, utc_text_of_micros(recorded)
                identifier = _uuid_text(event_id)
                canonical = dumps([
                    stream, identifier, type_name, schema_version, utc_text_of_micros(occurred), recorded_text,
                    _text(data), _text(metadata),
                ])
                unreadable = "" if stream is not None else f"stream id {stream_id} has no stream row"
            except (TypeError, ValueError, UnicodeDecodeError, OverflowError) as error:
                identifier, canonical, unreadable = None, None, f"unreadable stored column: {error}"
            yield position, stream, version, identifier, canonical, _hash(stored, store), unreadable
        if progress is not None:
            progress(len(rows))


def _uuid_text(raw: Any) -> str:
    if not isinstance(raw, bytes) or len(raw) != 16:
        raise ValueError(f"event_id is not 16 bytes: {raw!r}")
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):  # a raw UPDATE may have stored text: same characters, same hash
        return value
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _hash(value: Any, store: EventStore) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None:  # only a store without a chain has none (SQLite's column is NOT NULL)
        raise VerifyUnsupported(f"{store!r} keeps no hash chain to verify")
    return str(value).encode()


# --- the scan ------------------------------------------------------------------------------------


def _scan(links: Iterator[Link], report: VerifyReport, dense: bool) -> None:
    previous = GENESIS
    last_position = 0 if dense else None
    versions: dict[Any, int] = {}
    breaks: list[_Break] = []
    version_only: list[Finding] = []
    expected = bytes.fromhex(report.expected_head) if report.expected_head else None
    count = expected_index = 0
    for position, stream, version, event_id, canonical, stored, unreadable in links:
        count += 1
        if report.first_position is None:
            report.first_position = position
        gap = None
        if last_position is not None and position != last_position + 1:
            if position > last_position + 1 and dense:
                gap = (last_position + 1, position - 1)
            elif position <= last_position:
                version_only.append(Finding(position, "reordered", f"position {position} comes after "
                                            f"{last_position}: positions must increase", stream, None, event_id))
        note = _version_note(versions, stream, version)
        linked = canonical is not None and _sha256(previous + canonical).digest() == stored
        if not linked or gap is not None:
            breaks.append(_Break(position, canonical, stored, previous, stream, version, event_id, note, gap,
                                 unreadable))
        elif note:
            version_only.append(Finding(position, "removed" if "jumps" in note else "reordered", note, stream,
                                        version, event_id))
        if expected is not None and stored == expected and report.expected_head_position is None:
            report.expected_head_position = position
            expected_index = count
        previous, last_position = stored, position
    report.events = count
    if report.expected_head_position is not None:
        report.appended_since_expected = count - expected_index
    report.last_position = last_position if count else None
    report.head_hash = previous
    for finding in _classify(breaks):
        _add(report, finding)
    if not breaks:  # versions only speak for themselves when the chain holds (it was recomputed)
        for finding in version_only:
            _add(report, finding)


def _version_note(versions: dict[Any, int], stream: Any, version: Any) -> str:
    """What the stream's version sequence says at this event ("" when it continues)."""
    last = versions.get(stream, -1)
    if not isinstance(version, int):
        return f"stream version {version!r} is not an integer"
    if version > last:
        versions[stream] = version
    if version == last + 1:
        return ""
    if version > last + 1:
        missing = f"{last + 1}" if version == last + 2 else f"{last + 1}..{version - 1}"
        return f"stream {stream} jumps from version {last} to {version}: version {missing} is missing"
    return f"stream {stream} version {version} comes after version {last}"


def _classify(breaks: list[_Break]) -> Iterator[Finding]:
    """Name each broken link: a moved event (its bytes chain at another break), a removal
    (a hole in the positions or the stream's versions), else an alteration."""
    compared = breaks[:SUSPECTS_COMPARED]
    for broken in breaks:
        where = (broken.stream, broken.version if isinstance(broken.version, int) else None, broken.event_id)
        if broken.unreadable:
            yield Finding(broken.position, "altered", broken.unreadable, *where)
            continue
        moved = _moved_from(broken, compared) if broken in compared else None
        if broken.gap is not None:
            first, last = broken.gap
            missing = f"position {first} is" if first == last else f"positions {first}..{last} are"
            yield Finding(first, "removed", f"{missing} missing: the event at {broken.position} does not chain "
                          "from the one before it")
        elif moved is not None:
            yield Finding(broken.position, "reordered", moved, *where)
        elif "jumps" in broken.version_note:
            yield Finding(broken.position, "removed", broken.version_note + "; the chain does not continue from "
                          "the event before", *where)
        elif broken.version_note:
            yield Finding(broken.position, "reordered", broken.version_note, *where)
        else:
            yield Finding(broken.position, "altered", "the stored bytes or hash differ from what was chained "
                          "after the event before", *where)


def _moved_from(broken: _Break, others: list[_Break]) -> str | None:
    assert broken.canonical is not None
    for other in others:
        if other is broken:
            continue
        link = _sha256(other.previous + broken.canonical).digest()
        if link == broken.stored:
            return f"this event (with its hash) was chained at position {other.position}, not here"
        if link == other.stored:
            return f"this event's bytes were chained at position {other.position}, not here"
        if _sha256(other.stored + broken.canonical).digest() == broken.stored:
            return f"this event was chained after the one now at position {other.position}, which moved"
    return None


def _add(report: VerifyReport, finding: Finding) -> None:
    report.problems += 1
    if len(report.findings) < FINDINGS_KEPT:
        report.findings.append(finding)
