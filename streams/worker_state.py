"""The journey processor's state, saved when a worker stops cleanly and handed over to the
next workers when the broker lost every record (the memory-only bundled broker restarted).

Without it, a restarted bundled broker holds no events and no journeys: the relay
republishes the whole log and the worker folds it again (at a million customers ~9 minutes
during which new events wait). The worker's journeys are already in files
(``application.journey_spill``); a clean stop copies each partition's file to
``<data>/worker/state/`` with the position of the last event folded into it. ``touchpoints
up``, finding its broker emptied and the views' own saved state holding every one of those
journeys, hands them over: it moves them to ``<data>/worker/handed/``, points the relay's
checkpoint at the lowest of those positions, so only the events after it are published
again, and names the new events topic in ``handover.json``.

The handed-over files are then the base of the journeys for as long as that events topic
lives: the new journeys topic holds only what changed over them. A worker restoring a
partition (its start, a restart after a crash, a rebalance) copies the partition's base and
applies the changelog over it; it then folds the events after the position (those it folded
already come again as duplicates, which journeys ignore). Nothing is published again, so
only readers that hold the base may read the changelog alone: the worker, and the views,
whose saved state holds it (checked before the hand-over: ``views_hold_every_saved_journey``;
if that state cannot be taken up after all, the platform applies the base to the views
itself). The next clean stop saves the worker's whole journeys again (the base with the
changes: flattened), and the next hand-over replaces the base.

Files in ``<data>/worker/state/`` (as saved) and ``<data>/worker/handed/`` (as handed over):

- ``partition-<p>.sqlite``: the partition's journeys (``SpilledJourneys.save_copy``);
- ``manifest.json``, written last: format, journey format version, the events topic id the
  journeys were folded from, per partition the position and event id of the last event
  folded (null: the partition never had an event), and the journeys topic's id and end
  offsets at the stop (whether the views read that far: ``views_hold_every_saved_journey``);
- ``handover.json`` (handed only), written by the platform: the events topic it created and
  the position after which the relay publishes into it.

A worker that starts finds a saved state not handed over (the broker kept its records, or
the views did not hold it) stale and discards it, and a handed-over base naming another
events topic than the one it reads too: its changelog is the truth then.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from application.durable_files import write_atomically
from projections import journey as journey_module

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
HANDOVER = "handover.json"


def state_folder(data: Path) -> Path:
    """Where a worker whose data folder is ``data`` saves its journeys' state."""
    return Path(data) / "worker" / "state"


def handed_folder(state: Path) -> Path:
    """Where the state saved in ``state`` is moved when it is handed over (the base of the
    journeys for the life of the events topic it was handed to)."""
    return state.parent / "handed"


def partition_file(folder: Path, partition: int) -> Path:
    return folder / f"partition-{partition}.sqlite"


@dataclass(frozen=True)
class SavedJourneys:
    """A saved state as its manifest describes it."""

    folder: Path
    events_topic_id: str
    positions: dict[int, int | None]  # partition -> last events position folded (None: it never had one)
    event_ids: dict[int, str | None]  # partition -> the id of the event at that position
    journeys_topic_id: str | None = None  # the journeys topic the saved journeys were all published to
    journeys_ends: dict[int, int] | None = None  # and its end offsets then (None: not known)

    @property
    def after(self) -> int:
        """The position after which every partition needs the events again."""
        known = [position for position in self.positions.values() if position is not None]
        return min(known) if known else 0

    def file(self, partition: int) -> Path:
        return partition_file(self.folder, partition)


def save(folder: Path, journeys: dict[int, Any], positions: dict[int, tuple[int | None, str | None]], *,
         events_topic_id: str, published: tuple[str | None, dict[int, int]] | None = None) -> None:
    """Save each partition's journeys (``SpilledJourneys``) and, last, the manifest naming
    ``positions`` (partition -> position and event id of the last event folded) and where
    they were all ``published`` (the journeys topic's id and end offsets, if known)."""
    discard(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for partition, held in sorted(journeys.items()):
        held.save_copy(partition_file(folder, partition))
    _write_manifest(SavedJourneys(
        folder, events_topic_id, {p: positions[p][0] for p in journeys}, {p: positions[p][1] for p in journeys},
        published[0] if published else None, published[1] if published else None))


def _write_manifest(saved: SavedJourneys) -> None:
    _write_json(saved.folder / MANIFEST, {
        "format": FORMAT, "journey_version": str(journey_module.VERSION), "events_topic_id": saved.events_topic_id,
        "partitions": {str(p): {"position": saved.positions[p], "event_id": saved.event_ids[p]}
                       for p in sorted(saved.positions)},
        "journeys_topic_id": saved.journeys_topic_id,
        "journeys_ends": None if saved.journeys_ends is None else {str(p): e for p, e in saved.journeys_ends.items()},
    })


def read(folder: Path) -> SavedJourneys | None:
    """The saved state, if one is there that this code can use (else None, said in the log)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("worker state: unreadable manifest (%r): not used", error)
        return None
    if manifest.get("format") != FORMAT or manifest.get("journey_version") != str(journey_module.VERSION):
        log.warning("worker state: format %s, journeys version %s (this code: %s, %s): not used",
                    manifest.get("format"), manifest.get("journey_version"), FORMAT, journey_module.VERSION)
        return None
    partitions = {int(p): entry for p, entry in manifest["partitions"].items()}
    ends = manifest.get("journeys_ends")
    saved = SavedJourneys(folder, manifest["events_topic_id"],
                          {p: entry["position"] for p, entry in partitions.items()},
                          {p: entry["event_id"] for p, entry in partitions.items()},
                          manifest.get("journeys_topic_id"),
                          None if ends is None else {int(p): int(end) for p, end in ends.items()})
    missing = [p for p in partitions if not saved.file(p).is_file()]
    if missing:
        log.warning("worker state: the files of partitions %s are missing: not used", missing)
        return None
    return saved


def hand_over(folder: Path, events_topic_id: str, after: int) -> None:
    """Say that the events topic ``events_topic_id`` holds every event after ``after``:
    the next workers reading it restore on the saved journeys."""
    _write_json(folder / HANDOVER, {"events_topic_id": events_topic_id, "after": after})


def handed_over(folder: Path, events_topic_id: str | None) -> SavedJourneys | None:
    """The saved state, if it was handed over to the events topic ``events_topic_id``."""
    try:
        handover = json.loads((folder / HANDOVER).read_bytes())
    except (OSError, ValueError):
        return None
    saved = read(folder)
    if saved is None or events_topic_id is None or handover.get("events_topic_id") != events_topic_id:
        return None
    if handover.get("after", -1) > saved.after:  # the topic lacks events the state needs
        log.warning("worker state: handed over after position %s, the journeys need it after %s: not used",
                    handover.get("after"), saved.after)
        return None
    return saved


def views_hold_every_saved_journey(feed: dict[str, Any] | None, saved: SavedJourneys) -> bool:
    """Whether views whose Kafka feed stopped at ``feed`` (its checkpoint) had read every
    journey the saved state holds: the same journeys topic, read to at least its end
    offsets when the worker stopped. Only then may the state be handed over: the journeys
    topic after it holds only the changes over the saved journeys."""
    if not feed or feed.get("kind") != "kafka" or not saved.journeys_ends or saved.journeys_topic_id is None:
        return False
    positions = {int(p): int(offset) for p, offset in (feed.get("positions") or {}).items()}
    return feed.get("topic_id") == saved.journeys_topic_id and all(
        positions.get(p, 0) >= end for p, end in saved.journeys_ends.items())


def discard(folder: Path) -> None:
    """Remove a saved state (the manifest first: a half-removed state is never read)."""
    (folder / MANIFEST).unlink(missing_ok=True)
    (folder / HANDOVER).unlink(missing_ok=True)
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(value, indent=1).encode())


def hand_over_to_fresh_broker(data: Path, store: Any, bootstrap: str, *, topic: str | None = None,
                              journeys_topic: str | None = None,
                              views_hold: Callable[[SavedJourneys], bool] | None = None) -> SavedJourneys | None:
    """Before the relay and the worker start: if the broker lost the events topic (it has
    another id than the relay's checkpoint names, and no record: the bundled broker
    restarted), hand the worker's saved state over, so the relay publishes only the events
    after its lowest position instead of the whole log, and the worker takes its journeys
    from the files. Checked first: the log still holds each partition's last folded event
    where the state says, the topics have the state's partitions and hold no record, the
    relay had published at least that far, and ``views_hold(state)``: the views' saved
    state holds every saved journey (the journeys topic will hold only the changes over
    them). Returns the state handed over (in ``handed_folder``; the relay resumes after its
    ``after``), or None (a state found is discarded then; the relay republishes from 0
    after a loss, as without one)."""
    from kafka import KafkaAdminClient

    from streams.checkpoint import Checkpoint, SqliteCheckpointStore
    from streams.topics import EVENTS_TOPIC, JOURNEYS_TOPIC, close_admin, describe_topics, end_offsets

    topic = topic or EVENTS_TOPIC
    journeys_topic = journeys_topic or JOURNEYS_TOPIC
    folder = state_folder(data)
    saved = read(folder)
    if saved is None:
        return None
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                             client_id="touchpoints-platform-admin")
    checkpoints = SqliteCheckpointStore(Path(data) / "relay.db")
    try:
        topics = describe_topics(admin, [topic, journeys_topic])
        described = topics.get(topic)
        ends = end_offsets(admin, topic, described[1]) if described else {}
        journeys = topics.get(journeys_topic)
        journeys_ends = end_offsets(admin, journeys_topic, journeys[1]) if journeys else {}
        relayed = checkpoints.load(topic)
        reason = (_cannot_hand_over(saved, store, described, ends, relayed)
                  or (any(journeys_ends.values()) and f"the journeys topic {journeys_topic} holds records")
                  or (views_hold is not None and not views_hold(saved)
                      and "the views' saved state does not hold every saved journey") or None)
        if reason is not None:
            log.warning("worker state: not handed over (%s): discarded", reason)
            discard(folder)
            return None
        after = saved.after
        handed = handed_folder(folder)
        discard(handed)  # the base of a topic that is gone
        folder.rename(handed)
        hand_over(handed, described[0], after)
        # the relay finds its topic as it left it (same id, nothing acknowledged in it yet) and goes on after `after`
        checkpoints.save(topic, Checkpoint(position=after, topic_id=described[0]))
    finally:
        checkpoints.close()
        close_admin(admin, "platform")
    log.warning("worker state: handed over to %s %s, which lost its records: the relay publishes the events after "
                "position %d (those before it are not folded again)", topic, described[0], after)
    return read(handed)


def saved_journey_batches(saved: SavedJourneys, size: int = 10_000) -> Iterator[list[tuple[str, Any]]]:
    """Every journey of ``saved``, decoded, as ``(key, IdentityJourney)`` lists of up to
    ``size``: what views that could not take up their own state apply before the changelog."""
    from application.journey_spill import saved_journeys

    batch: list[tuple[str, Any]] = []
    for partition in sorted(saved.positions):
        for item in saved_journeys(saved.file(partition)):
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def _cannot_hand_over(saved: SavedJourneys, store: Any, described: tuple | None, ends: dict[int, int],
                      relayed: Any) -> str | None:
    from application.view_state import event_id_at

    if described is None or described[0] is None:
        return "the events topic is missing or has no id"
    if relayed.topic_id is None or relayed.topic_id == described[0] or any(ends.values()):
        return "the broker kept the events topic: the worker restores from its changelog"
    if set(described[1]) != set(saved.positions):
        return f"the events topic has partitions {sorted(described[1])}, the state {sorted(saved.positions)}"
    if relayed.position is None or relayed.position < saved.after:
        return f"the relay's checkpoint {relayed.position} is before the state's position {saved.after}"
    for partition, position in sorted(saved.positions.items()):
        if position is not None and event_id_at(store, position) != saved.event_ids[partition]:
            return f"the log no longer holds event {saved.event_ids[partition]} at position {position}"
    return None
