"""Bulk loading (the engine of `touchpoints ingest`): batches, rejects, duplicates, failures,
with the decoder in a thread and in a child process."""

from typing import ClassVar, Literal

import os
import random
import signal
import threading

import orjson
import pytest

from application.bulk_ingest import (
    _BLOCK_HEAD,
    DECODE_SLICE,
    BulkReport,
    _ForkedDecoder,
    _read_frame,
    _start_decoders,
    _write_frame,
    bulk_load,
    line_blocks,
    split_lines,
)
from application.decoder_priority import DECODER_NICENESS
from application.ingest import Ingestor
from events.models import Touch
from events.registry import default_registry
from events.sqlite.store import SQLiteEventStore
from events.store import StoreUnavailable

DECODERS = ["thread", "process"]


class PodcastListened(Touch):
    """A team's own touch type, registered without editing core code."""

    TYPE: ClassVar[str] = "podcast_listened"
    type: Literal["podcast_listened"] = "podcast_listened"


def ndjson(events):
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def load(store, data, *, decoder, chunk=1 << 20, **options):
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    rejects = []
    report = bulk_load(chunks, Ingestor(store), decoder=decoder, on_reject=rejects.append, **options)
    return report, rejects


@pytest.mark.parametrize("decoder", DECODERS)
def test_valid_lines__are_all_stored_and_counted(store, make_event, decoder):
    events = [make_event() for _ in range(25)]

    report, rejects = load(store, ndjson(events), decoder=decoder, batch_size=10)

    assert (report.accepted, report.duplicates, report.rejected, report.lines) == (25, 0, 0, 25)
    assert report.batches == 3 and report.decoder == decoder
    assert rejects == []
    assert {str(r.event_id) for r in store.read_all()} == {e["event_id"] for e in events}


@pytest.mark.parametrize("decoder", DECODERS)
def test_invalid_lines__go_to_rejects_with_line_number_reasons_and_raw_bytes_while_valid_ones_are_stored(
    store, make_event, decoder
):
    good = [make_event() for _ in range(3)]
    bad_type = orjson.dumps(make_event(type="fax_sent"))
    lines = [orjson.dumps(good[0]), b"{not json", orjson.dumps(good[1]), bad_type, orjson.dumps(good[2])]

    report, rejects = load(store, b"\n".join(lines) + b"\n", decoder=decoder)

    assert (report.accepted, report.rejected) == (3, 2)
    assert [r.line for r in rejects] == [2, 4]
    assert rejects[0].raw == b"{not json" and "malformed JSON" in rejects[0].errors[0].reason
    assert rejects[1].raw == bad_type and rejects[1].errors[0].field == "type"
    assert rejects[1].as_dict()["errors"] == [{"field": "type", "reason": "unknown event type 'fax_sent'"}]
    assert len(list(store.read_all())) == 3


@pytest.mark.parametrize("decoder", DECODERS)
def test_lines_split_across_chunks__are_reassembled(store, make_event, decoder):
    events = [make_event() for _ in range(12)]

    report, rejects = load(store, ndjson(events), decoder=decoder, chunk=7)

    assert (report.accepted, report.rejected) == (12, 0)


@pytest.mark.parametrize("decoder", DECODERS)
def test_blank_lines_and_a_last_line_without_newline__are_handled(store, make_event, decoder):
    data = b"\n" + orjson.dumps(make_event()) + b"\r\n  \n" + orjson.dumps(make_event())

    report, rejects = load(store, data, decoder=decoder)

    assert (report.accepted, report.rejected, report.blank, report.lines) == (2, 0, 2, 4)


@pytest.mark.parametrize("decoder", DECODERS)
def test_duplicates_within_and_across_batches__are_stored_once_and_counted(store, make_event, decoder):
    events = [make_event() for _ in range(6)]
    data = ndjson(events + [events[0], events[5]] + events[:2])

    report, _ = load(store, data, decoder=decoder, batch_size=4)

    assert (report.accepted, report.duplicates) == (6, 4)
    assert len(list(store.read_all())) == 6


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_blocks_dealt_to_several_decoder_processes__come_back_in_input_order_with_their_line_numbers(
    store, make_event, processes
):
    events = [make_event(customer_id=f"c-{n}", anonymous_id=None) for n in range(23)]
    lines = [orjson.dumps(e) for e in events]
    lines[6:6] = [b"{bad"]  # line 7: in the third block of 3 lines
    lines[17:17] = [orjson.dumps(make_event(type="fax_sent"))]  # line 18: in the sixth block
    rejects = []

    report = bulk_load(
        [b"\n".join(lines) + b"\n"], Ingestor(store), batch_size=3, decoder="process", on_reject=rejects.append,
        processes=processes,
    )

    assert (report.accepted, report.rejected, report.lines) == (23, 2, 25)
    assert [r.line for r in rejects] == [7, 18]
    assert [str(r.event_id) for r in store.read_all()] == [e["event_id"] for e in events]


@pytest.mark.parametrize("decoder", DECODERS)
def test_rejects_in_later_slices_of_a_large_batch__keep_their_line_numbers(store, make_event, decoder):
    count = 2 * DECODE_SLICE + 50
    lines = [orjson.dumps(make_event()) for _ in range(count)]
    bad_lines = [DECODE_SLICE + 3, 2 * DECODE_SLICE + 1, count]  # 1-based, in the second, third and last slice
    for number in bad_lines:
        lines[number - 1] = orjson.dumps({**orjson.loads(lines[number - 1]), "channel": "Not A Channel"})
    rejects = []

    report = bulk_load([b"\n".join(lines)], Ingestor(store), batch_size=count, decoder=decoder,
                       on_reject=rejects.append)

    assert (report.accepted, report.rejected, report.batches) == (count - 3, 3, 1)
    assert [r.line for r in rejects] == bad_lines
    assert all(r.errors[0].field == "channel" for r in rejects)


def test_process_decoder__without_fork_spawns_interpreters_that_decode_the_same(store, make_event, monkeypatch):
    monkeypatch.delattr("os.fork")
    events = [make_event() for _ in range(7)]
    lines = [orjson.dumps(e) for e in events]
    lines[3:3] = [b"{bad"]

    rejects = []
    report = bulk_load([b"\n".join(lines)], Ingestor(store), batch_size=2, decoder="process",
                       on_reject=rejects.append)

    assert (report.accepted, report.rejected) == (7, 1)
    assert [r.line for r in rejects] == [4]
    assert [str(r.event_id) for r in store.read_all()] == [e["event_id"] for e in events]


@pytest.mark.parametrize("start", ["forked", "spawned"])
def test_decoder_children__run_niced_below_the_appending_process(make_event, monkeypatch, start):
    # given decoder children, forked or (without os.fork) spawned
    if start == "spawned":
        monkeypatch.delattr("os.fork")
    children = _start_decoders(default_registry(), 2)
    try:
        # when each has decoded a block
        for child in children:
            _write_frame(child.stdin, _BLOCK_HEAD.pack(1) + orjson.dumps(make_event()))
            assert _read_frame(child.stdout)
        # then each runs DECODER_NICENESS below this process (the kernel caps niceness at 19)
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + DECODER_NICENESS)
        assert [os.getpriority(os.PRIO_PROCESS, child.pid) for child in children] == [expected, expected]
    finally:
        for child in children:
            _write_frame(child.stdin, b"")
            assert child.wait() == 0


def test_line_blocks__cut_any_chunking_into_the_lines_split_lines_gives():
    rng = random.Random(5)
    for _ in range(2000):
        lines = [b"x" * rng.randrange(0, 4) for _ in range(rng.randrange(0, 25))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(0, 6))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        per_block = rng.randrange(1, 7)

        blocks = list(line_blocks(chunks, per_block))

        assert [line for block, _ in blocks for line in block.split(b"\n")] == list(split_lines(chunks))
        assert [len(block.split(b"\n")) for block, _ in blocks] == [count for _, count in blocks]
        assert all(count == per_block for _, count in blocks[:-1])


def test_loading_the_same_input_again__stores_nothing_new(store, make_event):
    data = ndjson([make_event() for _ in range(8)])
    load(store, data, decoder="thread")

    report, _ = load(store, data, decoder="thread")

    assert (report.accepted, report.duplicates) == (0, 8)


def test_progress__is_reported_after_every_committed_batch(store, make_event):
    data = ndjson([make_event() for _ in range(10)])
    seen = []

    bulk_load([data], Ingestor(store), batch_size=4, decoder="thread",
              on_progress=lambda report: seen.append((report.accepted, report.bytes_read)))

    assert [accepted for accepted, _ in seen] == [4, 8, 10]
    assert seen[-1][1] == len(data)


def test_a_decoder_child_killed_mid_load__stops_it_with_whole_batches_stored_and_a_rerun_completes_it(
    store, make_event
):
    # given a load of 20 batches in two decoder children (frames larger than a pipe holds, so
    # neither can run far ahead), one of which is killed once the first batch is stored
    events = [make_event() for _ in range(20_000)]
    data = ndjson(events)
    killed = []

    def kill_a_child(report):
        if not killed:
            pid = _child_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    # when the load goes on
    with pytest.raises(RuntimeError, match="decoder process ended unexpectedly"):
        bulk_load([data], Ingestor(store), batch_size=1000, decoder="process", on_progress=kill_a_child)

    # then what was stored is whole batches, the first events of the input in order
    stored = [str(e.event_id) for e in store.read_all()]
    assert killed and len(stored) % 1000 == 0 and 1000 <= len(stored) < 20_000
    assert stored == [e["event_id"] for e in events[: len(stored)]]
    # and the same load again stores the rest, nothing twice
    report = bulk_load([data], Ingestor(store), batch_size=1000, decoder="process")
    assert (report.accepted, report.duplicates) == (20_000 - len(stored), len(stored))
    assert [str(e.event_id) for e in store.read_all()] == [e["event_id"] for e in events]


def _child_pids() -> list[int]:
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            pids += [int(pid) for pid in children.read().split()]
    return pids


@pytest.mark.parametrize("decoder", DECODERS)
def test_store_failure__earlier_batches_stay_committed_and_a_rerun_completes_the_load(tmp_path, make_event, decoder):
    path = tmp_path / "events.db"
    data = ndjson([make_event() for _ in range(9)])
    store = SQLiteEventStore(path)

    with pytest.raises(StoreUnavailable):
        bulk_load([data], Ingestor(store), batch_size=3, decoder=decoder, on_progress=lambda report: store.close())

    reopened = SQLiteEventStore(path)
    assert len(list(reopened.read_all())) == 3
    report = bulk_load([data], Ingestor(reopened), batch_size=3, decoder=decoder)
    assert (report.accepted, report.duplicates) == (6, 3)
    assert len(list(reopened.read_all())) == 9
    reopened.close()


@pytest.mark.parametrize("decoder", DECODERS)
def test_input_read_error__raises_after_storing_the_lines_read_before_it(store, make_event, decoder):
    data = ndjson([make_event() for _ in range(4)])

    def chunks():
        yield data
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        bulk_load(chunks(), Ingestor(store), decoder=decoder)

    assert len(list(store.read_all())) == 4


def test_team_registered_type__is_validated_by_the_child_process_decoder(store, make_event):
    registry = default_registry()
    registry.register(PodcastListened)
    data = ndjson([make_event("podcast_listened", channel="spotify")])

    report = bulk_load([data], Ingestor(store, registry), decoder="process")

    assert (report.accepted, report.rejected) == (1, 0)
    assert next(store.read_all()).type == "podcast_listened"


def test_auto_decoder__small_inputs_decode_in_a_thread_and_large_ones_in_a_process(store, make_event):
    data = ndjson([make_event()])

    small = bulk_load([data], Ingestor(store), size_hint=len(data))
    unknown_size = bulk_load([data], Ingestor(store), size_hint=None)

    assert small.decoder == "thread" and unknown_size.decoder == "process"


def test_auto_decoder__a_registry_a_child_cannot_rebuild_stays_in_process(store, make_event):
    registry = default_registry()
    local_type = type("LocalTouch", (PodcastListened,), {"TYPE": "local_touch", "__module__": "__main__",
                                                         "__annotations__": {"type": str}, "type": "local_touch"})
    registry.register(local_type)

    report = bulk_load([ndjson([make_event()])], Ingestor(store, registry))

    assert report.decoder == "thread" and report.accepted == 1


def test_bad_batch_size__is_refused(store):
    with pytest.raises(ValueError, match="batch_size"):
        bulk_load([b""], Ingestor(store), batch_size=0)


def test_split_lines__joins_pieces_and_keeps_a_trailing_partial_line():
    assert list(split_lines([b"a\nb", b"c\n", b"\nd"])) == [b"a", b"bc", b"", b"d"]


def test_report__serialises_every_counter():
    assert BulkReport(lines=3, accepted=2, rejected=1).as_dict()["rejected"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked decoders need os.fork")
def test_forked_decoder__polled_by_one_thread_while_another_waits_is_reaped_once():
    # given decoder children killed, as an interrupted load kills them while their readers still poll
    for _ in range(20):
        child = _ForkedDecoder(default_registry(), [])
        child.kill()
        outcomes = []

        # when a reader thread polls it while the loader waits for it
        poller = threading.Thread(target=lambda: outcomes.extend(child.poll() for _ in range(200)))
        poller.start()
        waited = child.wait()
        poller.join()
        child.stdin.close()
        child.stdout.close()

        # then neither raised (a second waitpid of a reaped child raises ECHILD) and both saw its end
        assert waited == -signal.SIGKILL
        assert set(outcomes) <= {None, -signal.SIGKILL} and child.poll() == -signal.SIGKILL
