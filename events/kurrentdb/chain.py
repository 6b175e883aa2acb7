"""The audit hash chain on KurrentDB: computed over ``$all`` order, anchored by seals.

KurrentDB has no global write lock we can hold, so concurrent writers cannot chain
each event to the previous one at write time. Instead the chain is a pure function
of the log, computed when reading in commit order (``events.hashing``, GENESIS
before the first event of the namespace), and *seals* make it tamper-evident:

- A seal records ``(position, count, hash)`` of the chain at one event, in the seal
  stream. The adapter writes one every ``sealEvery`` events (default 10,000) as it
  walks the chain (the relay walks it continuously, so seals follow the head closely),
  and ``KurrentDBEventStore.seal()`` seals the head on demand.
- Rule: at a sealed position the *sealed* hash is the event's hash, and the chain
  continues from it; a seal whose event is gone re-anchors the chain where the event
  was. So ``RecordedEvent.hash`` is the same whichever position a read starts from,
  and a generic verifier (each hash == chain(previous hash, canonical bytes)) fails
  exactly at a seal whose interval was altered, or just after a removed sealed event.

What this proves: every event up to the newest seal is as it was when sealed (no
change, removal, insertion or reordering), pinpointed to one seal interval.
What it cannot: anything about events after the newest seal; which event in an
interval changed; and, like any chain, a rewrite by someone who also rewrites the
seals (an auditor's noted head hash, or ``check_seals`` against noted seals, covers
that).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid5

import orjson

from events.hashing import GENESIS, canonical_of, chain
from events.times import utc_text
from events.store import RecordedEvent

_SEAL_IDS = UUID("6f1c0f5e-2d0a-4c41-9a53-3f4f3b8f6a10")


@dataclass(frozen=True, slots=True)
class ChainState:
    """The chain after ``count`` events: ``hash`` is the last event's hash."""

    hash: bytes
    count: int


GENESIS_STATE = ChainState(GENESIS, 0)


@dataclass(frozen=True, slots=True)
class Seal:
    """The chain at one event, as written to the seal stream."""

    position: int
    count: int
    hash: bytes
    sealed_at: datetime

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "position": self.position,
                "count": self.count,
                "hash": self.hash.hex(),
                "sealed_at": utc_text(self.sealed_at),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "Seal":
        """Raises ``ValueError`` naming what is wrong with a stored seal."""
        try:
            fields = orjson.loads(raw)
            seal = cls(
                position=int(fields["position"]),
                count=int(fields["count"]),
                hash=bytes.fromhex(fields["hash"]),
                sealed_at=datetime.fromisoformat(fields["sealed_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed seal: {type(error).__name__}: {error}") from None
        if len(seal.hash) != len(GENESIS) or seal.count < 1 or seal.position < 0:
            raise ValueError("malformed seal: hash must be 32 bytes, count >= 1, position >= 0")
        return seal

    def event_id(self, namespace: str | None) -> UUID:
        """Deterministic, so two processes sealing the same point write the same event
        (the server drops the second within its idempotency window)."""
        return uuid5(_SEAL_IDS, f"{namespace or ''}|{self.count}|{self.position}")


canonical = canonical_of  # the chain hashes the same canonical bytes on every adapter


class SealBook:
    """Known seals by position (the first seal written for a position wins)."""

    def __init__(self, seals: Iterable[Seal] = ()):
        self._positions: list[int] = []
        self._seals: dict[int, Seal] = {}
        for seal in seals:
            self.add(seal)

    def add(self, seal: Seal) -> bool:
        if seal.position in self._seals:
            return False
        bisect.insort(self._positions, seal.position)
        self._seals[seal.position] = seal
        return True

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, position: int) -> bool:
        return position in self._seals

    def get(self, position: int) -> Seal | None:
        return self._seals.get(position)

    def ordered(self) -> list[Seal]:
        return [self._seals[p] for p in self._positions]

    def after(self, position: int | None) -> list[Seal]:
        start = 0 if position is None else bisect.bisect_right(self._positions, position)
        return [self._seals[p] for p in self._positions[start:]]

    def last_before(self, position: int, *, excluding: set[int] = frozenset()) -> Seal | None:
        index = bisect.bisect_left(self._positions, position)
        while index > 0:
            index -= 1
            candidate = self._positions[index]
            if candidate not in excluding:
                return self._seals[candidate]
        return None


class Checkpoints:
    """Chain states this process already computed, by position: where the next read
    of ``$all`` from a later position can start instead of the genesis. Bounded:
    past ``capacity`` every other entry is dropped (coverage thins, never vanishes;
    the oldest and the newest stay)."""

    def __init__(self, capacity: int = 100_000):
        self._capacity = max(2, capacity)
        self._positions: list[int] = []
        self._states: dict[int, ChainState] = {}

    def __len__(self) -> int:
        return len(self._positions)

    def add(self, position: int, state: ChainState) -> None:
        if position in self._states:
            return
        bisect.insort(self._positions, position)
        self._states[position] = state
        if len(self._positions) > self._capacity:
            newest = self._positions[-1]
            kept = self._positions[0::2]
            if kept[-1] != newest:
                kept.append(newest)
            for gone in set(self._positions).difference(kept):
                del self._states[gone]
            self._positions = kept

    def discard(self, position: int) -> None:
        if self._states.pop(position, None) is not None:
            self._positions.remove(position)

    def last_before(self, position: int) -> tuple[int, ChainState] | None:
        index = bisect.bisect_left(self._positions, position)
        if index == 0:
            return None
        found = self._positions[index - 1]
        return found, self._states[found]


class ChainWalker:
    """Folds events, in ``$all`` order, into the chain under the seal rule (module
    docstring). ``start`` is the state after the event at ``after`` (None: genesis)."""

    def __init__(self, seals: Sequence[Seal], start: ChainState = GENESIS_STATE):
        self._seals = sorted(seals, key=lambda s: s.position)
        self._next = 0
        self.state = start

    def step(self, event: RecordedEvent) -> bytes:
        self._pass_seals_before(event.position)
        state = ChainState(chain(self.state.hash, canonical(event)), self.state.count + 1)
        seal = self._peek()
        if seal is not None and seal.position == event.position:
            state = ChainState(seal.hash, seal.count)
            self._next += 1
        self.state = state
        return state.hash

    def _pass_seals_before(self, position: int) -> None:
        seal = self._peek()
        while seal is not None and seal.position < position:
            self.state = ChainState(seal.hash, seal.count)  # its event is gone: re-anchor
            self._next += 1
            seal = self._peek()

    def _peek(self) -> Seal | None:
        return self._seals[self._next] if self._next < len(self._seals) else None


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealFinding:
    """One seal the log no longer agrees with. Something in the interval
    ``(since, seal.position]`` was altered, removed, inserted or reordered
    (``since`` None: from the first event)."""

    seal: Seal
    since: int | None
    problem: str


@dataclass
class SealReport:
    events: int = 0
    head_position: int | None = None
    head_hash: bytes = GENESIS
    seals_checked: int = 0
    newest_seal: Seal | None = None
    unsealed_events: int = 0  # after the newest seal: nothing proves them yet
    findings: list[SealFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def check_seals(events: Iterable[RecordedEvent], seals: Sequence[Seal]) -> SealReport:
    """Recompute the chain from the genesis over ``events`` (``$all`` order) and
    compare it with every seal, re-anchoring after each so every bad interval is
    reported, not only the first. Pure: the caller reads the events and seals."""
    ordered = sorted(seals, key=lambda s: s.position)
    report = SealReport()
    state = GENESIS_STATE
    since: int | None = None
    index = 0
    walked = 0
    for event in events:
        while index < len(ordered) and ordered[index].position < event.position:
            seal = ordered[index]
            report.findings.append(SealFinding(seal, since, "the sealed event is missing"))
            state, since, index = ChainState(seal.hash, seal.count), seal.position, index + 1
            report.seals_checked += 1
        walked += 1
        state = ChainState(chain(state.hash, canonical(event)), state.count + 1)
        if index < len(ordered) and ordered[index].position == event.position:
            seal = ordered[index]
            problem = _disagreement(seal, state)
            if problem:
                report.findings.append(SealFinding(seal, since, problem))
            state, since, index = ChainState(seal.hash, seal.count), seal.position, index + 1
            report.seals_checked += 1
        report.head_position = event.position
    for seal in ordered[index:]:
        report.findings.append(SealFinding(seal, since, "sealed beyond the newest event: events were removed"))
        report.seals_checked += 1
    report.events = walked
    report.head_hash = state.hash
    report.newest_seal = ordered[index - 1] if index else None
    report.unsealed_events = state.count - (report.newest_seal.count if report.newest_seal else 0)
    return report


def _disagreement(seal: Seal, state: ChainState) -> str:
    if state.hash != seal.hash:
        return "the chain differs from the sealed hash"
    if state.count != seal.count:
        return f"the seal counted {seal.count} events up to here, the log now has {state.count}"
    return ""
