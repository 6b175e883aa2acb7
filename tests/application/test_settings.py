from pathlib import Path

import pytest

from application.settings import Settings, SettingsError


def test_defaults__empty_environment_gives_the_documented_defaults():
    settings = Settings.from_env({})

    assert settings.data == Path("data")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.demo is True
    assert settings.demo_customers == 2000
    assert settings.store_url == "sqlite:///data/events.db"
    assert settings.kafka == "" and settings.kafka_bootstrap == []
    assert settings.partitions == 6
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.log_level == "INFO"


def test_gil_switch_interval__a_millisecond_unless_set(monkeypatch):
    # given no variable, then one of 2 ms
    default, asked = Settings.from_env({}), Settings.from_env({"TOUCHPOINTS_GIL_SWITCH_INTERVAL": "0.002"})

    # when a server process tunes itself for reads with each
    from consumers.api.server import tune_for_reads

    applied: list[float] = []
    monkeypatch.setattr("sys.setswitchinterval", applied.append)
    tune_for_reads(default)
    tune_for_reads(asked)

    # then CPython's 5 ms becomes 1 ms, or what was asked
    assert applied == [0.001, 0.002]


def test_views_journeys_on_disk__off_unless_asked():
    # given no variable, then a true one
    # then the journeys stay in memory by default and go to a file when asked
    assert Settings.from_env({}).views_journeys_on_disk is False
    assert Settings.from_env({"TOUCHPOINTS_VIEWS_JOURNEYS_ON_DISK": "1"}).views_journeys_on_disk is True


def test_views_contributions_on_disk__beside_the_journeys_unless_turned_off():
    # given no variable, then a false one
    # then the kept contributions follow the journeys into the file by default, and stay in memory when asked
    assert Settings.from_env({}).views_contributions_on_disk is True
    assert Settings.from_env({"TOUCHPOINTS_VIEWS_CONTRIBUTIONS_ON_DISK": "0"}).views_contributions_on_disk is False


def test_worker_journeys_on_disk__on_unless_turned_off(tmp_path):
    # given no variable, then a false one
    # then the worker keeps its journeys in <data>/worker/ by default, in memory when asked
    from streams.app import create_app

    on = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_KAFKA": "127.0.0.1:9"})
    off = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_KAFKA": "127.0.0.1:9",
                             "TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK": "0"})

    assert off.worker_journeys_on_disk is False and on.worker_journeys_on_disk is True
    assert create_app(off).processor.state.journeys_folder is None
    assert create_app(on).processor.state.journeys_folder == tmp_path / "worker"


def test_worker_saves_state__only_when_asked_and_only_with_its_journeys_on_disk(tmp_path):
    # given a worker as deployed alone, one asked to save its state, and one asked with journeys in memory
    from streams.app import create_app
    from streams.worker_state import state_folder

    base = {"TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_KAFKA": "127.0.0.1:9"}
    alone = Settings.from_env(base)
    asked = Settings.from_env({**base, "TOUCHPOINTS_WORKER_SAVES_STATE": "1"})
    in_memory = Settings.from_env({**base, "TOUCHPOINTS_WORKER_SAVES_STATE": "1",
                                   "TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK": "0"})

    # then only the one asked, with its journeys in files, saves them (a file is what it copies)
    assert create_app(alone).processor.state_folder is None
    assert create_app(asked).processor.state_folder == state_folder(tmp_path)
    assert create_app(in_memory).processor.state_folder is None


def test_store_url__follows_the_data_folder_when_not_set(tmp_path):
    settings = Settings.from_env({"TOUCHPOINTS_DATA": str(tmp_path)})

    assert settings.data == tmp_path
    assert settings.store_url == f"sqlite:///{tmp_path}/events.db"


def test_store_url__explicit_value_wins_over_the_data_folder():
    settings = Settings.from_env({"TOUCHPOINTS_DATA": "/srv/x", "TOUCHPOINTS_STORE": "esdb://db:2113?tls=false"})

    assert settings.store_url == "esdb://db:2113?tls=false"


@pytest.mark.parametrize("text, expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("false", False), ("No", False), ("off", False)])
def test_demo__accepts_the_usual_boolean_spellings(text, expected):
    assert Settings.from_env({"TOUCHPOINTS_DEMO": text}).demo is expected


def test_kafka__bootstrap_servers_are_split_and_a_kafka_scheme_is_dropped():
    settings = Settings.from_env({"TOUCHPOINTS_KAFKA": "kafka://k1:9092, k2:9093"})

    assert settings.kafka_bootstrap == ["k1:9092", "k2:9093"]


def test_numbers__underscores_and_surrounding_blanks_are_accepted():
    settings = Settings.from_env({"TOUCHPOINTS_PORT": " 9000 ", "TOUCHPOINTS_MAX_BODY_BYTES": "1_048_576"})

    assert settings.port == 9000
    assert settings.max_body_bytes == 1_048_576


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        ("TOUCHPOINTS_PORT", "eighty", "expected an integer"),
        ("TOUCHPOINTS_PORT", "70000", "between 0 and 65535"),
        ("TOUCHPOINTS_DEMO", "maybe", "expected 1/0"),
        ("TOUCHPOINTS_DEMO_CUSTOMERS", "0", "at least 1"),
        ("TOUCHPOINTS_PARTITIONS", "-2", "between 1 and"),
        ("TOUCHPOINTS_MAX_BODY_BYTES", "1.5", "expected an integer"),
        ("TOUCHPOINTS_STORE", "postgres://db/x", "sqlite://"),
        ("TOUCHPOINTS_STORE", "sqlite://", "sqlite://"),
        ("TOUCHPOINTS_KAFKA", "broker-without-port", "host:port"),
        ("TOUCHPOINTS_LOG_LEVEL", "loud", "DEBUG"),
        ("TOUCHPOINTS_KAFKA_COMPRESSION", "brotli", "zstd, lz4, gzip, none"),
        ("TOUCHPOINTS_GIL_SWITCH_INTERVAL", "0", "more than 0"),
        ("TOUCHPOINTS_GIL_SWITCH_INTERVAL", "fast", "number of seconds"),
    ],
)
def test_bad_value__raises_settings_error_naming_the_variable_and_reason(variable, value, reason):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})

    assert caught.value.variable == variable
    assert reason in caught.value.reason
    assert variable in str(caught.value)


def test_kafka_compression__zstd_by_default_and_any_known_codec_in_any_case():
    assert Settings.from_env({}).kafka_compression == "zstd"
    assert Settings.from_env({"TOUCHPOINTS_KAFKA_COMPRESSION": "LZ4"}).kafka_compression == "lz4"
    assert Settings.from_env({"TOUCHPOINTS_KAFKA_COMPRESSION": "none"}).kafka_compression == "none"
    assert Settings.from_env({"TOUCHPOINTS_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_empty_values__count_as_unset():
    settings = Settings.from_env({"TOUCHPOINTS_PORT": "", "TOUCHPOINTS_DEMO": " ", "TOUCHPOINTS_STORE": ""})

    assert settings.port == 8000 and settings.demo is True
    assert settings.store_url == "sqlite:///data/events.db"


def test_reading_settings__touches_nothing_on_disk(tmp_path):
    missing = tmp_path / "not-created"

    Settings.from_env({"TOUCHPOINTS_DATA": str(missing)})

    assert not missing.exists()


def test_module_docstring__documents_every_variable():
    import application.settings as module

    for variable in ("DATA", "HOST", "PORT", "DEMO", "DEMO_CUSTOMERS", "STORE", "KAFKA", "KAFKA_COMPRESSION",
                     "PARTITIONS", "MAX_BODY_BYTES", "LOG_LEVEL"):
        assert f"TOUCHPOINTS_{variable}``" in module.__doc__
