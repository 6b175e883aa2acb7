"""The view commands of the CLI: the same documents as the API, without a server."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumers.api.app import create_app
from consumers.cli.main import main
from application.ingest import Ingestor
from application.settings import Settings
from application.store_feed import load_views
from events.registry import decode_recorded
from events.sqlite.store import SQLiteEventStore
from projections.attribution import MODELS
from tests.consumers.helpers import cli
from tests.conftest import admin_headers


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOUCHPOINTS_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def api(demo_store_path: Path, tmp_path_factory: pytest.TempPathFactory):
    store = SQLiteEventStore(demo_store_path)
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path_factory.mktemp("cli_api")), "TOUCHPOINTS_DEMO": "0"})
    with TestClient(create_app(store=store, settings=settings, views=load_views(store)),
                    headers=admin_headers(settings.data)) as client:
        yield client
    store.close()


@pytest.fixture(scope="module")
def linked_anonymous_id(demo_store_path: Path) -> str:
    with SQLiteEventStore(demo_store_path) as store:
        for recorded in store.read_all():
            if recorded.type == "identity_linked":
                return decode_recorded(recorded).event.anonymous_id
    raise AssertionError("the demo data has no identity link")


def store_url(path: Path) -> str:
    return f"sqlite:///{path}"


SAME_DOCUMENT = [
    *((["attribution", "--model", model], f"/v1/attribution?model={model}") for model in MODELS),
    (["attribution", "--model", "time_decay", "--half-life-days", "3", "--lookback-days", "30",
      "--from", "2023-01-01", "--to", "2024-06-30"],
     "/v1/attribution?model=time_decay&half_life_days=3&lookback_days=30&from=2023-01-01&to=2024-06-30"),
    (["attribution", "--model", "markov", "--group-by", "campaign"], "/v1/attribution?model=markov&group_by=campaign"),
    (["first-contact", "--group-by", "campaign", "--from", "2023-01-01"],
     "/v1/first-contact?group_by=campaign&from=2023-01-01"),
    (["conversion-time"], "/v1/conversion-time"),
    (["first-contact", "--group-by", "source"], "/v1/first-contact?group_by=source"),
    (["conversion-time", "--group-by", "first_source"], "/v1/conversion-time?group_by=first_source"),
    (["paths", "--group-by", "source", "--lookback-days", "30"], "/v1/paths?group_by=source&lookback_days=30"),
    (["paths", "--top", "5", "--no-collapse-repeats"], "/v1/paths?top=5&collapse_repeats=false"),
    (["customers", "--by", "rfm", "--limit", "7"], "/v1/customers/top?by=rfm&limit=7"),
    (["prospects", "--limit", "9", "--channel", "instagram", "--now", "2025-06-01"],
     "/v1/prospects?limit=9&channel=instagram&now=2025-06-01"),
    (["funnel"], "/v1/funnel"),
    (["data-quality", "--limit", "3"], "/v1/data-quality?limit=3"),
]


@pytest.mark.parametrize(("argv", "url"), SAME_DOCUMENT, ids=[" ".join(a) for a, _ in SAME_DOCUMENT])
def test_cli_json_is_the_api_document(capsys, api, demo_store_path, argv, url):
    code, out, _ = cli(capsys, *argv, "--store", store_url(demo_store_path), "--format", "json")

    assert code == 0
    assert json.loads(out) == api.get(url).json()


def test_cli_timeline_of_a_linked_identity_is_the_api_timeline(capsys, api, demo_store_path, linked_anonymous_id):
    code, out, _ = cli(capsys, "timeline", linked_anonymous_id, "--store", store_url(demo_store_path), "--format", "json")

    assert code == 0
    assert json.loads(out) == api.get(f"/v1/customers/{linked_anonymous_id}/timeline").json()


def test_cli_csv_is_the_api_csv(capsys, api, demo_store_path):
    code, out, _ = cli(capsys, "first-contact", "--store", store_url(demo_store_path), "--format", "csv")

    assert code == 0
    assert out == api.get("/v1/first-contact", params={"format": "csv"}).text


def test_cli_default_output_is_a_readable_table(capsys, api, demo_store_path):
    rows = api.get("/v1/attribution", params={"model": "linear"}).json()["rows"]

    code, out, _ = cli(capsys, "attribution", "--store", store_url(demo_store_path))

    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "Attribution"
    table = lines[lines.index(f"rows ({len(rows)})") + 1:]
    assert table[0].split() == ["channel", "conversions", "value"]
    assert [line.split()[0] for line in table[2:]] == [row["channel"] for row in rows]


def test_cli_timeline_table_lists_every_event(capsys, api, demo_store_path, linked_anonymous_id):
    events = api.get(f"/v1/customers/{linked_anonymous_id}/timeline").json()["events"]

    code, out, _ = cli(capsys, "timeline", linked_anonymous_id, "--store", store_url(demo_store_path))

    assert code == 0
    assert f"events ({len(events)})" in out


def test_cli_unknown_customer_exits_1_naming_it(capsys, demo_store_path):
    code, out, err = cli(capsys, "timeline", "nobody-here", "--store", store_url(demo_store_path))

    assert code == 1
    assert out == ""
    assert "nobody-here" in err


def test_cli_bad_parameter_value_exits_2_naming_it(capsys, demo_store_path):
    code, _, err = cli(capsys, "paths", "--top", "0", "--store", store_url(demo_store_path))

    assert code == 2
    assert "top:" in err


def test_cli_bad_time_exits_2_naming_it(capsys, demo_store_path):
    code, _, err = cli(capsys, "attribution", "--from", "last tuesday", "--store", store_url(demo_store_path))

    assert code == 2
    assert "from:" in err


def test_cli_unknown_model_is_a_usage_error(capsys, demo_store_path):
    with pytest.raises(SystemExit) as exited:
        main(["attribution", "--model", "bogus", "--store", store_url(demo_store_path)])

    assert exited.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_cli_csv_of_a_view_without_rows_exits_2(capsys, demo_store_path):
    code, _, err = cli(capsys, "data-quality", "--format", "csv", "--store", store_url(demo_store_path))

    assert code == 2
    assert "csv" in err.lower()


def test_cli_an_unusable_store_url_exits_2_naming_it(capsys):
    code, _, err = cli(capsys, "funnel", "--store", "ftp://nowhere/events")

    assert code == 2
    assert "ftp://nowhere/events" in err


def test_cli_point_in_time_is_the_api_point_in_time_document(capsys, api, demo_store_path):
    code, out, _ = cli(capsys, "funnel", "--as-of", "2023-06-30", "--store", store_url(demo_store_path),
                       "--format", "json")

    assert code == 0
    assert json.loads(out) == api.get("/v1/funnel", params={"as_of": "2023-06-30"}).json()
    assert json.loads(out)["reached"] < api.get("/v1/funnel").json()["reached"]


def test_cli_keeps_a_snapshot_and_sees_events_appended_after_it(capsys, demo_store_path, tmp_path, data_folder):
    copy = tmp_path / "copy.db"
    shutil.copy(demo_store_path, copy)
    code, out, _ = cli(capsys, "funnel", "--store", store_url(copy), "--format", "json")
    reached = json.loads(out)["reached"]
    with SQLiteEventStore(copy) as store:
        events, _ = Ingestor(store).validate_batch([{
            "event_id": str(uuid.uuid4()), "type": "ad_clicked", "occurred_at": "2024-12-31T12:00:00Z",
            "anonymous_id": "cookie:after-the-snapshot", "channel": "tiktok",
        }])
        Ingestor(store).append(events)

    code, out, _ = cli(capsys, "funnel", "--store", store_url(copy), "--format", "json")

    assert code == 0
    assert list(data_folder.glob("cache/views/*/views.snapshot"))
    assert json.loads(out)["reached"] == reached + 1
