"""What ``touchpoints up`` hands its child processes (the relay, the worker): the platform's
own settings, whatever the environment it was started from says."""

from __future__ import annotations

from application.settings import Settings
from consumers.platform import Platform


def test_children__get_the_platforms_kafka_settings_not_only_the_environment(tmp_path, monkeypatch):
    # given an environment that says one thing and platform settings that say another
    monkeypatch.setenv("TOUCHPOINTS_KAFKA_COMPRESSION", "zstd")
    monkeypatch.setenv("TOUCHPOINTS_PARTITIONS", "6")
    settings = Settings(data=tmp_path, kafka_compression="none", partitions=3)
    platform = Platform(settings)
    platform.bootstrap = "127.0.0.1:9092"

    # when it prepares its relay
    relay = platform._child("relay", ["relay"])

    # then the relay runs with the platform's settings
    assert relay.env["TOUCHPOINTS_KAFKA_COMPRESSION"] == "none"
    assert relay.env["TOUCHPOINTS_PARTITIONS"] == "3"
    assert relay.env["TOUCHPOINTS_KAFKA"] == "127.0.0.1:9092"
    assert relay.env["TOUCHPOINTS_DATA"] == str(tmp_path)


def test_children__the_worker_keeps_its_journeys_where_the_platform_says(tmp_path, monkeypatch):
    # given an environment asking for the worker's journeys on disk, and a platform that keeps them in memory
    monkeypatch.setenv("TOUCHPOINTS_WORKER_JOURNEYS_ON_DISK", "1")
    platform = Platform(Settings(data=tmp_path, worker_journeys_on_disk=False))
    platform.bootstrap = "127.0.0.1:9092"

    # when it prepares its worker
    worker = platform._child("worker", ["worker"])

    # then the worker reads the platform's choice
    assert Settings.from_env(worker.env).worker_journeys_on_disk is False
    # and saves its state at a clean stop, which this platform hands over after a broker loss
    assert Settings.from_env(worker.env).worker_saves_state is True
