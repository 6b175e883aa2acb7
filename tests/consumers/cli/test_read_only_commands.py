"""Defects found in the pre-release CLI walkthrough: commands that only read the log (views,
replay, verify) created an empty store at a mistyped path and reported on it (`verify` said
"OK", exit 0); view help promised exit 1 for every view; a stopped ingest printed "lines 1-0"."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.cli.main import main
from application.ingest import Ingestor
from events.sqlite.store import SQLiteEventStore
from tests.conftest import wire_event


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


READ_ONLY_COMMANDS = [["verify"], ["verify", "--views"], ["replay"], ["funnel"], ["timeline", "c-1"]]


@pytest.mark.parametrize("argv", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_on_a_missing_store_file_exits_2_naming_the_path(capsys, tmp_path, argv):
    # given a store URL whose file does not exist (a typo)
    missing = tmp_path / "typo" / "events.db"

    # when a command that only reads is run on it
    code, out, err = run(capsys, *argv, "--store", f"sqlite:///{missing}")

    # then it is refused as a bad store, naming the path, and nothing is created
    assert code == 2
    assert out == ""
    assert str(missing) in err
    assert "does not exist" in err
    assert not missing.parent.exists()


def test_the_default_store_missing_from_the_data_folder_is_refused_too(capsys, data_folder):
    # given TOUCHPOINTS_DATA names a folder with no event store yet
    # when verify runs on the default store
    code, _, err = run(capsys, "verify")

    # then it exits 2 naming the file it looked for, instead of verifying an empty log
    assert code == 2
    assert str(data_folder / "events.db") in err
    assert not (data_folder / "events.db").exists()


def test_an_existing_store_still_verifies_and_answers_views(capsys, tmp_path):
    # given a store file holding one event
    path = tmp_path / "events.db"
    with SQLiteEventStore(path) as store:
        ingestor = Ingestor(store)
        events, errors = ingestor.validate_batch([wire_event()])
        assert errors == []
        ingestor.append(events)

    # when verify and a view command read it
    verify_code, verify_out, _ = run(capsys, "verify", "--store", f"sqlite:///{path}")
    funnel_code, funnel_out, _ = run(capsys, "funnel", "--store", f"sqlite:///{path}", "--format", "json")

    # then both answer from it
    assert verify_code == 0
    assert "verified  1 events" in verify_out
    assert funnel_code == 0
    assert '"identities": 1' in funnel_out


def test_only_timeline_help_mentions_the_unknown_customer_exit_code(capsys):
    # given the view commands' help texts
    def description(command: str) -> str:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return capsys.readouterr().out

    # then exit code 1 (unknown customer) is documented where it can happen, and only there
    assert "1 unknown customer" in description("timeline")
    assert "unknown customer" not in description("funnel")


def test_ingest_stopped_before_any_line_names_no_empty_line_range(capsys, tmp_path):
    # given a file whose first line is invalid and a rejects path in a folder that does not exist
    source = tmp_path / "history.ndjson"
    source.write_text('{"type": "nope"}\n')
    rejects = tmp_path / "missing" / "rejects.ndjson"

    # when it is loaded
    code, _, err = run(capsys, "ingest", str(source), "--rejects", str(rejects), "--quiet",
                       "--store", f"sqlite:///{tmp_path / 'events.db'}")

    # then the stop is a usage error naming the rejects file, with no "lines 1-0" range
    assert code == 2
    assert str(rejects) in err
    assert "0 accepted" in err
    assert "lines 1-0" not in err
