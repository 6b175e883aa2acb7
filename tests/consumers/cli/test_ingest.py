"""`touchpoints ingest FILE`: rejects file, counts, exit codes, stdin, JSON summary, progress."""

import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from consumers.cli.main import build_parser, main
from application.demo import generate
from events.sqlite.store import SQLiteEventStore

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'events.db'}"


def stored(db_url):
    with SQLiteEventStore(db_url.removeprefix("sqlite:///")) as store:
        return list(store.read_all())


def count_rows(database):
    """Stored events, read without taking the store's write lock (0 before the table exists)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.Error:
        return 0


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


def test_good_and_bad_lines__stores_good_writes_rejects_and_exits_1(tmp_path, db_url, make_event, capsys):
    good = [make_event() for _ in range(3)]
    source = write_lines(tmp_path / "history.ndjson",
                         [good[0], b'{"type": "page_viewed"', good[1], make_event(channel="TikTok"), good[2]])

    code = main(["ingest", str(source), "--store", db_url])

    assert code == 1
    assert {str(r.event_id) for r in stored(db_url)} == {e["event_id"] for e in good}
    rejects = [orjson.loads(line) for line in (tmp_path / "history.ndjson.rejects.ndjson").read_bytes().splitlines()]
    assert [r["line"] for r in rejects] == [2, 4]
    assert rejects[0]["raw"] == '{"type": "page_viewed"'
    assert rejects[1]["errors"][0]["field"] == "channel"
    out = capsys.readouterr().out
    assert "accepted: 3" in out and "duplicates: 0" in out and "rejected: 2" in out
    assert "history.ndjson.rejects.ndjson" in out


def test_all_lines_valid__exits_0_and_leaves_no_rejects_file(tmp_path, db_url, make_event):
    source = write_lines(tmp_path / "ok.ndjson", [make_event() for _ in range(5)])

    code = main(["ingest", str(source), "--store", db_url])

    assert code == 0
    assert len(stored(db_url)) == 5
    assert not (tmp_path / "ok.ndjson.rejects.ndjson").exists()


def test_same_file_twice__second_run_counts_duplicates_and_stores_nothing(tmp_path, db_url, make_event, capsys):
    source = write_lines(tmp_path / "ok.ndjson", [make_event() for _ in range(4)])
    main(["ingest", str(source), "--store", db_url, "--json"])
    capsys.readouterr()

    code = main(["ingest", str(source), "--store", db_url, "--json"])

    summary = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (0, 4, 0)
    assert len(stored(db_url)) == 4


def test_json_summary__is_one_machine_readable_object(tmp_path, db_url, make_event, capsys):
    source = write_lines(tmp_path / "in.ndjson", [make_event(), b"nonsense"])

    main(["ingest", str(source), "--store", db_url, "--json", "--rejects", str(tmp_path / "bad.ndjson")])

    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["rejected"], summary["lines"]) == (1, 1, 2)
    assert summary["rejects_file"] == str(tmp_path / "bad.ndjson")
    assert (tmp_path / "bad.ndjson").exists()


def test_batch_size_option__sets_events_per_transaction(tmp_path, db_url, make_event, capsys):
    source = write_lines(tmp_path / "in.ndjson", [make_event() for _ in range(7)])

    main(["ingest", str(source), "--store", db_url, "--json", "--batch-size", "3"])

    assert orjson.loads(capsys.readouterr().out)["batches"] == 3


def test_store_defaults_to_the_data_folder_setting(tmp_path, make_event, monkeypatch):
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TOUCHPOINTS_STORE", raising=False)
    source = write_lines(tmp_path / "in.ndjson", [make_event()])

    assert main(["ingest", str(source)]) == 0

    assert len(stored(f"sqlite:///{tmp_path / 'data' / 'events.db'}")) == 1


def test_stdin__dash_reads_standard_input(tmp_path, db_url, make_event):
    events = [make_event() for _ in range(3)]

    finished = subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", "ingest", "-", "--store", db_url, "--json"],
        input=b"".join(orjson.dumps(e) + b"\n" for e in events) + b"bad line\n",
        capture_output=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )

    assert finished.returncode == 1, finished.stderr
    assert orjson.loads(finished.stdout)["accepted"] == 3
    assert (tmp_path / "stdin.rejects.ndjson").exists()
    assert len(stored(db_url)) == 3


def test_missing_file__is_a_usage_error(tmp_path, db_url, capsys):
    code = main(["ingest", str(tmp_path / "nope.ndjson"), "--store", db_url])

    assert code == 2
    assert "cannot read" in capsys.readouterr().err


def test_unwritable_rejects_path__is_a_usage_error(tmp_path, db_url, make_event, capsys):
    source = write_lines(tmp_path / "in.ndjson", [b"bad"])

    code = main(["ingest", str(source), "--store", db_url, "--rejects", str(tmp_path / "no" / "dir" / "r.ndjson")])

    assert code == 2
    assert "cannot write rejects" in capsys.readouterr().err


def test_unknown_store_scheme__is_a_usage_error(tmp_path, make_event, capsys):
    source = write_lines(tmp_path / "in.ndjson", [make_event()])

    code = main(["ingest", str(source), "--store", "mysql://db/x"])

    assert code == 2
    assert "mysql://db/x" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "many"])
def test_bad_batch_size__argparse_exits_2(tmp_path, size):
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(tmp_path / "x"), "--batch-size", size])

    assert exit_info.value.code == 2


def test_help__states_the_exit_codes():
    help_text = build_parser()._subparsers._group_actions[0].choices["ingest"].format_help()

    assert "0  every line was stored" in help_text
    assert "1  some lines were rejected" in help_text
    assert "2  usage error" in help_text


@pytest.mark.slow
def test_progress_bar__shown_on_a_terminal_for_large_files(tmp_path, db_url):
    source = tmp_path / "big.ndjson"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(500, seed=3)))
    assert source.stat().st_size > 1 << 20
    controller, terminal = pty.openpty()

    process = subprocess.Popen(
        [sys.executable, "-m", "consumers.cli.main", "ingest", str(source), "--store", db_url],
        stdout=subprocess.PIPE, stderr=terminal, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            piece = os.read(controller, 4096)
        except OSError:
            break
        if not piece:
            break
        shown += piece
    out, _ = process.communicate(timeout=120)
    os.close(controller)

    assert process.returncode == 0
    assert b"ingest:" in shown and b"100%" in shown
    assert b"accepted:" in out


@pytest.mark.slow
def test_interrupted_load__exits_130_keeps_committed_batches_and_a_rerun_completes(tmp_path, db_url):
    source = tmp_path / "history.ndjson"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(4000, seed=4)))
    total = source.read_bytes().count(b"\n")
    command = [sys.executable, "-m", "consumers.cli.main", "ingest", str(source), "--store", db_url,
               "--batch-size", "500", "--quiet"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C as in a terminal: a run started in the background (`cmd &` in a script, as CI
    # may) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while process.poll() is None and count_rows(tmp_path / "events.db") == 0:
        time.sleep(0.005)

    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    committed = len(stored(db_url))
    assert process.returncode == 130, err
    assert b"interrupted" in err and b"running the same command again completes the load" in err
    assert 0 < committed < total
    rerun = subprocess.run(command + ["--json"], capture_output=True, env=environment, timeout=120)
    summary = orjson.loads(rerun.stdout)
    assert rerun.returncode == 0
    assert summary["duplicates"] == committed and summary["accepted"] == total - committed
    assert len(stored(db_url)) == total
