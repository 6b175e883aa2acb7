"""``touchpoints erase`` and the sealed path of ``touchpoints ingest`` and the view commands."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from application.privacy.policy import Sealing
from tests.application.privacy.test_erasure import CUSTOMER, EMAIL, IDENTIFIERS, anna
from tests.consumers.helpers import cli


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, value in {"DATA": str(folder), "SEAL_PERSONAL_DATA": "1", "SEAL_CUSTOMER_IDS": "1"}.items():
        monkeypatch.setenv(f"TOUCHPOINTS_{name}", value)
    yield folder
    Sealing.in_folder(folder, customer_ids=True).close()


@pytest.fixture
def ingested(tmp_path: Path, capsys) -> None:
    source = tmp_path / "anna.ndjson"
    source.write_bytes(b"\n".join(orjson.dumps(item) for item in anna()) + b"\n")
    code, _, err = cli(capsys, "ingest", str(source), "--quiet")
    assert code == 0, err


def found(text: str) -> list[str]:
    return sorted(identifier for identifier in IDENTIFIERS if identifier in text)


def test_erase__the_person_is_erased_and_the_timeline_shows_no_value_after(ingested, capsys):
    _, before, _ = cli(capsys, "timeline", CUSTOMER, "--format", "json", "--no-cache")

    code, out, err = cli(capsys, "erase", EMAIL)
    _, after, _ = cli(capsys, "timeline", CUSTOMER, "--format", "json", "--no-cache")

    assert code == 0, err
    assert orjson.loads(out)["keys_destroyed"] == 4 and [text for text in found(out) if text not in EMAIL] == []
    assert found(before) == sorted(IDENTIFIERS) and found(after) == []


def test_erase__an_unknown_identity_exits_1(ingested, capsys):
    code, _, err = cli(capsys, "erase", "nobody@example.org")

    assert code == 1 and "no customer or identity" in err


def test_erase__without_sealing_there_is_nothing_to_erase(tmp_path, capsys, monkeypatch):
    unsealed = tmp_path / "unsealed"
    unsealed.mkdir()
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(unsealed))
    monkeypatch.setenv("TOUCHPOINTS_SEAL_PERSONAL_DATA", "0")
    source = tmp_path / "anna.ndjson"
    source.write_bytes(b"\n".join(orjson.dumps(item) for item in anna()) + b"\n")
    assert cli(capsys, "ingest", str(source), "--quiet")[0] == 0

    code, _, err = cli(capsys, "erase", EMAIL)

    assert code == 2 and "not sealed" in err


def test_ingest__the_stored_file_holds_no_personal_value(ingested, data_folder):
    stored = b"".join(path.read_bytes() for path in data_folder.glob("events.db*"))

    assert [identifier for identifier in IDENTIFIERS if identifier.encode() in stored] == []
