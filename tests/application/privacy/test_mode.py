"""The sealing mode of a log: recorded by its first append, every later start settled against it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from application import settings as settings_module
from application.bulk_ingest import bulk_load
from application.demo import generate
from application.ingest import Ingestor
from application.privacy.mode import UNSEALED, SealingMode, SealingModeError, recorded_mode, settle
from application.privacy.policy import Sealing, ingest_registry
from application.settings import Settings
from events.registry import REGISTRY
from events.sqlite.store import SQLiteEventStore
from tests.application.privacy.test_sealing import social

pytestmark = pytest.mark.usefixtures("closed_key_stores")


@pytest.fixture
def closed_key_stores(tmp_path: Path):
    yield
    for customer_ids in (False, True):
        Sealing.in_folder(tmp_path, customer_ids=customer_ids).close()


def environment(folder: Path, **variables: str) -> Settings:
    return Settings.from_env({"TOUCHPOINTS_DATA": str(folder), "TOUCHPOINTS_DEMO": "0",
                              **{f"TOUCHPOINTS_{name}": value for name, value in variables.items()}})


def append(folder: Path, settings: Settings, *bodies: dict) -> None:
    """Events appended the way every entry point appends them: settled, then ingested."""
    with SQLiteEventStore(folder / "events.db") as store:
        settled = settle(settings, store)
        registry = ingest_registry(REGISTRY, settled.sealing, data=settled.data)
        Ingestor(store, registry).append([REGISTRY.validate(body) for body in bodies])


def forget_mode(folder: Path) -> None:
    for path in folder.glob("keys.db*"):
        path.unlink()


def settled(folder: Path, settings: Settings) -> Settings:
    with SQLiteEventStore(folder / "events.db") as store:
        return settle(settings, store)


def test_mode__a_new_data_folder_takes_the_default_and_records_it_at_the_first_append(tmp_path):
    settings = environment(tmp_path)

    before = settled(tmp_path, settings)
    recorded_before = recorded_mode(tmp_path)
    append(tmp_path, settings, social("cookie:1", "@a"))

    default = settings_module.SEAL_PERSONAL_DATA_DEFAULT
    assert before.seal_personal_data is default
    assert recorded_before is None and recorded_mode(tmp_path) == SealingMode(default)


def test_mode__sealing_on_by_default_seals_new_data_folders_only(tmp_path, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    append(old, environment(old, SEAL_PERSONAL_DATA="0"), social("cookie:1", "@a"))
    forget_mode(old)  # a log stored before modes were recorded: events, no mode
    monkeypatch.setattr(settings_module, "SEAL_PERSONAL_DATA_DEFAULT", True)

    append(new, environment(new), social("cookie:2", "@b"))

    assert settled(old, environment(old)).seal_personal_data is False
    assert settled(new, environment(new)).seal_personal_data is True
    assert recorded_mode(new) == SealingMode(True) and b"cookie:2" not in (new / "events.db").read_bytes()


def test_mode__a_log_from_before_the_mode_was_recorded_refuses_sealing(tmp_path):
    append(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="0"), social("cookie:1", "@a"))
    forget_mode(tmp_path)

    with pytest.raises(SealingModeError) as refused:
        settled(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="1"))

    message = str(refused.value)
    assert message.startswith("TOUCHPOINTS_SEAL_PERSONAL_DATA=1 contradicts this log")
    assert "not sealed (its events were stored before the mode was recorded" in message
    assert "Fix: unset TOUCHPOINTS_SEAL_PERSONAL_DATA" in message


def test_mode__an_unset_setting_takes_the_recorded_mode(tmp_path):
    append(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="1", SEAL_CUSTOMER_IDS="1"), social("cookie:1", "@a"))

    settings = settled(tmp_path, environment(tmp_path))

    assert (settings.seal_personal_data, settings.seal_customer_ids) == (True, True)


def test_mode__turning_sealing_off_on_a_sealed_log_is_refused(tmp_path):
    append(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="1"), social("cookie:1", "@a"))

    with pytest.raises(SealingModeError, match=r"SEAL_PERSONAL_DATA=0 contradicts this log: its personal data is "
                                               r"sealed, customer ids kept as they are \(recorded in .*keys.db"):
        settled(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="0"))


def test_mode__the_customer_id_choice_is_part_of_the_mode(tmp_path):
    append(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="1", SEAL_CUSTOMER_IDS="1"), social("cookie:1", "@a"))

    with pytest.raises(SealingModeError, match="TOUCHPOINTS_SEAL_CUSTOMER_IDS=0 contradicts this log"):
        settled(tmp_path, environment(tmp_path, SEAL_CUSTOMER_IDS="0"))


def test_mode__an_empty_log_with_a_recorded_mode_says_how_to_choose_again(tmp_path):
    settings = settled(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="0"))
    ingest_registry(REGISTRY, None, data=settings.data).ingest_ready([])  # recorded, then nothing appended

    with pytest.raises(SealingModeError, match="this log is still empty, so deleting .*keys.db also lets you"):
        settled(tmp_path, environment(tmp_path, SEAL_PERSONAL_DATA="1"))


def test_mode__a_sealed_process_appends_nothing_after_an_unsealed_one_appended_first(tmp_path):
    # Both settled while the log was empty, each in its own mode: the first append decides.
    store = SQLiteEventStore(tmp_path / "events.db")
    unsealed = settle(environment(tmp_path, SEAL_PERSONAL_DATA="0"), store)
    sealed = settle(environment(tmp_path, SEAL_PERSONAL_DATA="1"), store)
    Ingestor(store, ingest_registry(REGISTRY, unsealed.sealing, data=tmp_path)).append(
        [REGISTRY.validate(social("cookie:1", "@a"))])

    with pytest.raises(SealingModeError, match="this log.s personal data is not sealed"):
        Ingestor(store, ingest_registry(REGISTRY, sealed.sealing, data=tmp_path)).append(
            [REGISTRY.validate(social("cookie:2", "@b"))])

    assert store.count() == 1
    store.close()


def test_mode__an_unsealed_process_appends_nothing_after_a_sealed_one_appended_first(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.db")
    sealed = settle(environment(tmp_path, SEAL_PERSONAL_DATA="1"), store)
    unsealed = settle(environment(tmp_path, SEAL_PERSONAL_DATA="0"), store)
    Ingestor(store, ingest_registry(REGISTRY, sealed.sealing, data=tmp_path)).append(
        [REGISTRY.validate(social("cookie:1", "@a"))])

    with pytest.raises(SealingModeError, match="this log.s personal data is sealed"):
        Ingestor(store, ingest_registry(REGISTRY, unsealed.sealing, data=tmp_path)).append(
            [REGISTRY.validate(social("cookie:2", "@b"))])

    assert store.count() == 1
    store.close()


def test_mode__forked_backfill_decoders_record_the_unsealed_mode(tmp_path):
    lines = b"\n".join(orjson.dumps(item) for item in generate(200, 3)) + b"\n"
    with SQLiteEventStore(tmp_path / "events.db") as store:
        registry = ingest_registry(REGISTRY, settle(environment(tmp_path, SEAL_PERSONAL_DATA="0"), store).sealing,
                                   data=tmp_path)

        report = bulk_load([lines], Ingestor(store, registry), decoder="process", batch_size=500, processes=2)

    assert report.accepted == lines.count(b"\n") and recorded_mode(tmp_path) == UNSEALED


def test_mode__settings_not_settled_do_not_say_how_the_log_is_sealed(tmp_path):
    with pytest.raises(RuntimeError, match="settle the settings against the log"):
        environment(tmp_path).sealing


@pytest.mark.parametrize("sealed", ["0", "1"])
def test_mode__a_data_folder_not_made_yet_is_made_at_the_first_append(tmp_path, sealed):
    folder = tmp_path / "not" / "yet"  # the store lives elsewhere (touchpoints ingest --store)

    with SQLiteEventStore(tmp_path / "events.db") as store:
        settings = settle(environment(folder, SEAL_PERSONAL_DATA=sealed), store)
        Ingestor(store, ingest_registry(REGISTRY, settings.sealing, data=folder)).append(
            [REGISTRY.validate(social("cookie:1", "@a"))])

    Sealing.in_folder(folder).close()
    assert recorded_mode(folder) == SealingMode(sealed == "1")
