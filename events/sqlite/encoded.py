"""Planning one ``append_encoded`` call: ``events.encoded.EncodedBatch`` columns in,
``events`` rows out, with no per-event objects beyond the row tuples SQLite binds.

Every stream is appended with ``StreamState.ANY``, so nothing can conflict: the plan
only skips duplicates (stored earlier, or repeated within the batch: both report the
original's place), continues each stream's version, and chains the hashes. The chain
input is ``canonical_head[i] + orjson.dumps(recorded_text) + canonical_tail[i]``, byte
for byte ``events.hashing.canonical_bytes`` (``tests/events/sqlite/test_encoded.py``
checks it against the chain verification).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat

import orjson

from events.encoded import EncodedBatch, EncodedOutcomes
from events.sqlite.batch import StreamHeads
from events.times import from_micros, to_micros, utc_text
from events.sqlite.ids import IdPlaces, keys_of
from events.store import DuplicatesFound


@dataclass(slots=True)
class EncodedPlan:
    rows: zip  # events rows in position order, for ``executemany`` (iterated once)
    results: EncodedOutcomes
    head: int  # the log head after the commit
    chain_head: bytes
    written: tuple[list[bytes], range]  # the new ids and their positions

    @property
    def count(self) -> int:
        return len(self.written[0])


class EncodedRequest:
    """One ``append_encoded`` call, with its recorded_at (microseconds since the epoch)."""

    def __init__(self, batch: EncodedBatch, recorded: int, *, refuse_duplicates: bool = False):
        columns = (batch.streams, batch.types, batch.versions, batch.occurred, batch.data)
        columns += (batch.canonical_head, batch.canonical_tail)
        if any(len(column) != len(batch.ids) for column in columns):
            raise ValueError("EncodedBatch columns differ in length")
        self.batch = batch
        self.recorded = recorded
        self.ids = batch.ids
        self.repeat_of = _repeats(batch.ids)
        self.refuse_duplicates = refuse_duplicates

    def __len__(self) -> int:
        return len(self.ids)

    def stamp(self, recorded_at: datetime) -> None:
        self.recorded = to_micros(recorded_at)

    def new_event_streams(self, stored: IdPlaces) -> set[str]:
        """The streams that receive at least one event not already stored."""
        streams = self.batch.streams
        if not stored and not self.repeat_of:
            return set(streams)
        return {streams[i] for i in self._kept(stored)}

    def _kept(self, stored: IdPlaces) -> list[int]:
        repeat_of = self.repeat_of
        return [i for i, event_id in enumerate(self.ids) if event_id not in stored and i not in repeat_of]

    def plan(self, stored: IdPlaces, streams: StreamHeads, head: int, chain_head: bytes) -> EncodedPlan:
        """Positions, versions and hashes for the events to write. ``stored``: event id ->
        (position, version) already in the log; ``streams``: holds every stream receiving
        an event (its versions are updated in place)."""
        if self.refuse_duplicates and (stored or self.repeat_of):
            found = {i: stored[event_id][0] for i, event_id in enumerate(self.ids) if event_id in stored}
            raise DuplicatesFound(found, dict(self.repeat_of))
        batch = self.batch
        columns = (batch.streams, batch.ids, batch.types, batch.versions, batch.occurred, batch.data)
        columns += (batch.canonical_head, batch.canonical_tail)
        kept = None if not stored and not self.repeat_of else self._kept(stored)
        if kept is not None:
            columns = tuple([column[i] for i in kept] for column in columns)
        names, ids, types, schema_versions, occurred, data, heads, tails = columns

        id_of, current = streams.ids, streams.versions
        recorded_json = orjson.dumps(utc_text(from_micros(self.recorded)))
        sha256 = hashlib.sha256
        stream_ids: list[int] = []
        versions: list[int] = []
        hashes: list[bytes] = []
        add_stream_id, add_version, add_hash = stream_ids.append, versions.append, hashes.append
        for name, head_bytes, tail in zip(names, heads, tails):
            version = current[name] + 1
            current[name] = version
            add_stream_id(id_of[name])
            add_version(version)
            chain_head = sha256(chain_head + head_bytes + recorded_json + tail).digest()
            add_hash(chain_head)

        positions = range(head + 1, head + 1 + len(ids))
        rows = zip(
            positions, stream_ids, versions, ids, keys_of(ids).tolist(), types, schema_versions, occurred,
            repeat(self.recorded), data, repeat(batch.metadata), hashes,
        )  # fmt: skip
        outcomes = self._outcomes(kept, stored, positions, versions)
        return EncodedPlan(rows, outcomes, positions.stop - 1, chain_head, (ids, positions))

    def _outcomes(
        self, kept: list[int] | None, stored: IdPlaces, positions: range, versions: list[int]
    ) -> EncodedOutcomes:
        count = len(self.ids)
        if kept is None:
            return EncodedOutcomes(list(positions), versions, [False] * count)
        places = [0] * count
        place_versions = [0] * count
        duplicates = [True] * count
        for i, position, version in zip(kept, positions, versions):
            places[i], place_versions[i], duplicates[i] = position, version, False
        for i, event_id in enumerate(self.ids):
            if event_id in stored:
                places[i], place_versions[i] = stored[event_id]
        for i, first in self.repeat_of.items():  # in input order: the first copy is placed already
            places[i], place_versions[i] = places[first], place_versions[first]
        return EncodedOutcomes(places, place_versions, duplicates)


def _repeats(ids: list[bytes]) -> dict[int, int]:
    """index -> index of the first copy, for ids repeated within the batch."""
    if len(set(ids)) == len(ids):
        return {}
    first: dict[bytes, int] = {}
    return {i: seen for i, event_id in enumerate(ids) if (seen := first.setdefault(event_id, i)) != i}
