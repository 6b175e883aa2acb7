"""bench/million.py: its pure pieces (freshness bookkeeping, pacing, query windows, a kept
run's folder); the run itself takes tens of minutes and is not tested here."""

from __future__ import annotations

import orjson
import pytest

from bench import million
from bench.http_load import BENCH_ADMIN_KEY
from bench.million import Freshness, collector_rows, due_times, verify_success, window


def test_freshness__a_post_is_applied_once_the_status_reaches_its_last_position():
    freshness = Freshness()
    freshness.posted(answered_at=10.0, last_position=500)

    freshness.observed(10.01, position=499, version=3, refreshed_version=3)
    freshness.observed(10.02, position=500, version=4, refreshed_version=3)

    assert freshness.applied == [pytest.approx(0.02)]


def test_freshness__documents_count_once_refreshed_past_the_version_seen_when_applied():
    freshness = Freshness()
    freshness.posted(answered_at=10.0, last_position=500)
    freshness.observed(10.02, position=500, version=4, refreshed_version=3)

    freshness.observed(10.30, position=500, version=4, refreshed_version=4)

    assert freshness.documents == [pytest.approx(0.30)]
    assert freshness.pending == 0


def test_freshness__one_poll_past_several_posts_resolves_them_all():
    freshness = Freshness()
    freshness.posted(answered_at=1.0, last_position=100)
    freshness.posted(answered_at=1.1, last_position=200)
    freshness.posted(answered_at=1.2, last_position=300)

    freshness.observed(1.25, position=200, version=7, refreshed_version=7)

    assert freshness.applied == [pytest.approx(0.25), pytest.approx(0.15)]
    assert freshness.documents == [pytest.approx(0.25), pytest.approx(0.15)]
    assert freshness.pending == 1


def test_freshness__a_poll_answered_before_the_post_was_noted_counts_zero_not_negative():
    freshness = Freshness()
    freshness.posted(answered_at=5.0, last_position=10)

    freshness.observed(4.99, position=10, version=1, refreshed_version=1)

    assert freshness.applied == [0.0]


def test_due_times__one_array_every_interval_from_the_start():
    assert due_times(100.0, 4, 0.1) == pytest.approx([100.0, 100.1, 100.2, 100.3])


def test_window__one_year_shifted_by_a_day_for_each_get():
    assert window(0) == "from=2023-01-01&to=2024-01-01"
    assert window(31) == "from=2023-02-01&to=2024-02-01"


def test_collector_rows__the_pauses_of_the_live_phase_by_process_and_generation():
    before = {"API": {1: (10, 0.5, 0.02, 7)}, "worker": {}}
    after = {"API": {1: (14, 0.75, 0.03, 19)}, "worker": {2: (1, 0.2, 0.2, 0)}}

    rows = collector_rows(before, after)

    assert [(row.case.split(":")[1].strip().split(",")[0], row.value) for row in rows] == [
        ("API collector", 0.25), ("worker collector", 0.2)]
    assert "4 collections freeing 12 objects" in rows[0].case and "longest pause since start 30 ms" in rows[0].case


def test_keep__a_finished_run_leaves_what_its_restarts_are_checked_against(tmp_path):
    documents = {"/v1/funnel": b'{"rows": []}', "/v1/paths": b'{"paths": [1]}'}

    million.write_reference(tmp_path, 10_000, 1_234, documents)

    kept = orjson.loads((tmp_path / million.REFERENCE_FILE).read_bytes())
    assert kept["customers"] == 10_000 and kept["head"] == 1_234
    assert {path: document.encode() for path, document in kept["documents"].items()} == documents
    assert kept["admin_key"] == BENCH_ADMIN_KEY  # the kept access store knows only this key


def test_keep__a_kept_run_of_another_size_is_not_restarted(tmp_path):
    million.write_reference(tmp_path, 10_000, 1_234, {"/v1/funnel": b"{}"})

    with pytest.raises(RuntimeError, match="10,000 customers, not 20,000"):
        million.restarts_only(tmp_path, 20_000)


def test_keep__a_folder_holding_something_else_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv(million.KEEP_VARIABLE, str(tmp_path))
    monkeypatch.setattr(million, "journey_files", lambda customers: pytest.fail("the demo journeys were written"))

    with pytest.raises(RuntimeError, match="not empty, and no finished run in it"):
        million.run(0.01)

    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_verify_failure__names_the_views_that_differ():
    # given a failed verify's JSON report
    report = orjson.dumps({"same": False, "position": 42, "attempts": 3, "views": [
        {"name": "funnel", "same": True}, {"name": "paths", "same": False}, {"name": "prospects", "same": False}]})

    # when the bench says what failed
    said = million.verify_failure(report, b"")

    # then it names each differing view, the position and the attempts
    assert said == "paths, prospects differ at position 42 after 3 attempts"


def test_verify_failure__without_a_report_gives_the_end_of_the_output():
    assert million.verify_failure(b"", b"x" * 500 + b"store not found").endswith("store not found")


def test_refresh_totals__reads_the_refresh_parts_from_the_apis_metrics_as_rendered():
    # given /metrics as the API renders the views' refresh families
    import httpx

    from consumers.api.metrics import MetricFamily, render

    text = render([
        MetricFamily("touchpoints_views_refreshes_total", "counter", "Refreshes.").add(12),
        MetricFamily("touchpoints_views_longest_refresh_seconds", "gauge", "Longest.").add(1.5),
        MetricFamily("touchpoints_views_refresh_seconds_total", "counter", "By part.")
        .add(0.25, {"part": "waiting"}).add(3.0, {"part": "computing"}).add(0.125, {"part": "encoding"}),
    ])
    client = httpx.Client(base_url="http://api", transport=httpx.MockTransport(lambda request: httpx.Response(200, text=text)))

    # when the bench reads them
    totals = million.refresh_totals(client)

    # then every part is there
    assert totals == {"refreshes": 12.0, "longest": 1.5, "waiting": 0.25, "computing": 3.0, "encoding": 0.125}


def test_verify_success__names_an_earlier_attempt_that_differed():
    first_try = orjson.dumps({"same": True, "attempts": 1, "position": 9, "earlier": []})
    second_try = orjson.dumps({"same": True, "attempts": 2, "position": 12,
                               "earlier": [{"attempt": 1, "position": 9, "differing": ["prospects", "data_quality"]}]})

    assert verify_success(first_try) == "equal to a replay"
    assert verify_success(second_try) == ("equal to a replay at attempt 2 at position 12 "
                                          "(differed: attempt 1 at position 9: prospects, data_quality)")


def test_phase_peaks__a_process_replaced_in_the_phase_counts_once_at_its_highest_and_its_cpu_stays(tmp_path):
    import subprocess
    import sys
    import time

    from bench.million import PhasePeaks

    # given a root process whose child holds ~80 MiB, exits, and is replaced by one holding ~30 MiB
    child = "import sys, time; block = bytearray(int(sys.argv[1]) << 20); time.sleep(float(sys.argv[2]))"
    root = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {child!r}, '80', '1.5'])\n"
        f"subprocess.run([sys.executable, '-c', {child!r}, '30', '30'])\n")])
    try:
        peaks = PhasePeaks(root.pid, interval=0.1)
        try:
            # when the phase ends with the second child running
            time.sleep(3.0)
            rows = {row.case: row.value for row in peaks.next_phase("in the test")}
            spent = peaks.cpu_by_role()
        finally:
            peaks.close()
    finally:
        root.kill()
        root.wait()
    # then the children's role peaked at the first child's ~80 MiB, not 80 + 30
    python = [case for case in rows if case.startswith("peak RSS, in the test: python")]
    assert len(python) == 1, rows
    assert 80 <= rows[python[0]] < 105
    # and the platform's peak is the root's and that child's, at one moment
    assert rows["peak RSS, in the test: whole platform (sum, broker included)"] < rows[python[0]] + 40
    # and both children's CPU is counted (building 80 MiB took some)
    assert spent[python[0].removeprefix("peak RSS, in the test: ")] > 0
