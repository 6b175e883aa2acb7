"""`touchpoints schemas`: the JSON Schema of every type, one type, or files in a folder."""

import orjson

from consumers.cli.main import main
from events.registry import REGISTRY


def test_all_types__printed_keyed_by_type_name(capsys):
    assert main(["schemas"]) == 0

    schemas = orjson.loads(capsys.readouterr().out)
    assert sorted(schemas) == REGISTRY.names()
    assert schemas["order_placed"]["x-schema-version"] == 2


def test_one_type__prints_only_its_schema(capsys):
    assert main(["schemas", "--type", "consent_changed"]) == 0

    schema = orjson.loads(capsys.readouterr().out)
    assert schema["title"] == "ConsentChanged"
    assert "data" in schema["required"]


def test_out_folder__one_file_per_type(tmp_path):
    assert main(["schemas", "--out", str(tmp_path / "schemas")]) == 0

    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert files == [f"{name}.schema.json" for name in REGISTRY.names()]
    assert orjson.loads((tmp_path / "schemas" / "ad_clicked.schema.json").read_bytes())["title"] == "AdClicked"


def test_unknown_type__exits_2_naming_the_known_ones(capsys):
    assert main(["schemas", "--type", "telegram_sent"]) == 2

    err = capsys.readouterr().err
    assert "telegram_sent" in err and "page_viewed" in err


def test_unwritable_folder__exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")

    assert main(["schemas", "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err
