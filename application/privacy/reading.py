"""Where people read personal data: timelines and the log read back, opened.

``timeline`` finds the person under any form a reader types (``pseudonyms.stored_forms``)
and opens the document with the events it was made of; ``open_log_page`` puts each
sealed value beside its stored event. The views are served as computed: aggregates hold
no token, and the person-level lists (top customers, prospects, data quality) name
people by their stored identity, a pseudonym where sealed, which a timeline opens. So
``verify --views`` still compares the served documents with a replay byte for byte,
without the keys.

A reader never gets the timeline of someone whose analytics consent is withdrawn
(``projections.consent``): ``timeline`` raises ``ConsentWithdrawn`` (the API answers 451).
As of a moment before the withdrawal (``as_of``, an audit question) the person had not
withdrawn yet, and the timeline is what it was. Erasure reads the person through
``find_timeline``, which does not refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from application.privacy.policy import Sealing
from application.privacy.pseudonyms import PREFIX, stored_forms, tokens_of
from events.logged import LoggedEvent
from events.registry import EventRegistry, decode_recorded
from events.store import RecordedEvent
from projections.timeline import withdrawn_at

ReadEvents = Callable[[list[str]], Iterable[LoggedEvent]]


class ConsentWithdrawn(Exception):
    """The person withdrew analytics consent (at ``withdrawn_at``): their timeline is not shown."""

    def __init__(self, withdrawn_at: str):
        self.withdrawn_at = withdrawn_at
        super().__init__(f"this person withdrew analytics consent at {withdrawn_at}: person-level views "
                         "leave them out from then on")


class TimelineSource(Protocol):
    def timeline(self, identity: str, read_events: ReadEvents) -> dict[str, Any] | None: ...


def find_timeline(
    views: TimelineSource, identity: str, read_events: ReadEvents, sealing: Sealing | None
) -> tuple[dict[str, Any], list[LoggedEvent]] | None:
    """The timeline document of the person ``identity`` names (as stored: tokens) and the
    events it was made of; None if no form of it is known."""
    forms = [identity] if sealing is None else stored_forms(sealing.keys().pepper(), identity,
                                                            customer_ids=sealing.customer_ids)
    for form in forms:
        read: list[LoggedEvent] = []

        def keep(streams: list[str]) -> Iterable[LoggedEvent]:
            read.extend(read_events(streams))
            return read

        document = views.timeline(form, keep)
        if document is not None:
            return document, read
    return None


def timeline(
    views: TimelineSource, identity: str, read_events: ReadEvents, sealing: Sealing | None
) -> dict[str, Any] | None:
    """The person's timeline as a reader sees it: values where their keys exist;
    ConsentWithdrawn if the person withdrew analytics consent."""
    found = find_timeline(views, identity, read_events, sealing)
    if found is None:
        return None
    document, events = found
    withdrawn = withdrawn_at(document)
    if withdrawn is not None:
        raise ConsentWithdrawn(withdrawn)
    return document if sealing is None else sealing.opener().open_document(document, events)


def open_log_page(documents: list[dict[str, Any]], records: list[RecordedEvent], sealing: Sealing,
                  registry: EventRegistry) -> None:
    """Add ``personal`` (token -> value, or ``erased:<token>``) to each document of a page
    of the log whose event holds tokens; the event itself stays as stored, so a reader can
    still check its hash."""
    logged = [item for item in (_decoded(record, registry) for record in records if PREFIX.encode() in record.data)
              if item is not None]
    tokens_at = {item.position: tokens_of(item.event) for item in logged}
    wanted = {token for tokens in tokens_at.values() for token in tokens}
    if not wanted:
        return
    values = sealing.opener().values(wanted, logged)
    for document in documents:
        tokens = tokens_at.get(document["position"])
        if tokens:
            document["personal"] = {token: values[token] for token in tokens}


def _decoded(record: RecordedEvent, registry: EventRegistry) -> LoggedEvent | None:
    """The event, or None for a row that no longer decodes (a type no longer registered, a
    damaged body): the page shows such a row as stored, with the reason, and opens nothing."""
    try:
        return decode_recorded(record, registry)
    except ValueError:  # InvalidEvent or a damaged body: the read-back shows every row as stored
        return None
