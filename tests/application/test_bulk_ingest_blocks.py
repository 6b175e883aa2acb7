"""How a backfill decoder hands its events to the registry's ingest step: slice by slice,
or the whole block at once when the step costs less on large batches (sealing)."""

from __future__ import annotations

import orjson

from application.bulk_ingest import DECODE_SLICE, decode_block
from application.demo import generate
from events.models import Event
from events.registry import REGISTRY

LINES = [orjson.dumps(item) for item in generate(60, 2)][: DECODE_SLICE * 2 + 7]


class Recording:
    def __init__(self) -> None:
        self.calls: list[list[Event]] = []

    def __call__(self, events: list[Event]) -> list[Event]:
        self.calls.append(list(events))
        return events


def test_decode_block__a_step_that_prefers_large_batches_gets_the_whole_block_once_in_input_order():
    step = Recording()
    registry = REGISTRY.with_ingest_step(step, large_batches=True)

    batch = decode_block([*LINES[:3], b"", b"{not json", *LINES[3:]], registry, first_line=1)

    assert [len(call) for call in step.calls] == [len(LINES)]
    assert [event.event_id.bytes for event in step.calls[0]] == batch.encoded.ids
    assert (batch.blank, [reject.line for reject in batch.rejects]) == (1, [5])


def test_decode_block__another_step_gets_each_slice_as_it_is_validated():
    step = Recording()
    registry = REGISTRY.with_ingest_step(step)

    batch = decode_block(LINES, registry, first_line=1)

    assert [len(call) for call in step.calls] == [DECODE_SLICE, DECODE_SLICE, 7]
    assert [event.event_id.bytes for call in step.calls for event in call] == batch.encoded.ids
