"""docker-compose.yml and the Dockerfile cannot run here (no container engine): these
tests read them and check what would break a real ``docker compose up``: KRaft settings
that disagree, settings the code does not know, commands the CLI does not have,
volumes, ports and start order."""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import application.settings
from consumers.cli.main import build_parser
from application.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("topics", "relay", "worker", "api")
DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def kafka_env(services) -> dict[str, str]:
    return {key: str(value) for key, value in services["kafka"]["environment"].items()}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {name: (host, port)}."""
    found = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def resolved_env(service: dict) -> dict[str, str]:
    """The service's environment with ``${VAR:-default}`` replaced by the default."""
    return {key: DEFAULT.sub(lambda m: m.group(2), str(value)) for key, value in service["environment"].items()}


def documented_settings() -> set[str]:
    return set(re.findall(r"``(TOUCHPOINTS_\w+)``", application.settings.__doc__))


def test_compose__runs_kafka_kurrentdb_and_the_platforms_services(services):
    assert set(services) == {"kafka", "kurrentdb", *APP_SERVICES}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kurrentdb"]["image"].startswith(
        ("docker.kurrent.io/kurrent-latest/kurrentdb:", "kurrentplatform/kurrentdb:")
    )
    assert all(services[name]["build"] == "." for name in APP_SERVICES)


def test_kafka__is_one_combined_kraft_node_whose_id_is_its_quorum_voter(kafka_env, services):
    voters = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    node, _, address = voters[0].partition("@")
    controller_host, _, controller_port = address.rpartition(":")
    controller = listeners(kafka_env["KAFKA_LISTENERS"])[kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]]

    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert voters == [f"{kafka_env['KAFKA_NODE_ID']}@{address}"]
    assert controller_host in ("kafka", services["kafka"].get("hostname"))
    assert controller[1] == int(controller_port) and node == kafka_env["KAFKA_NODE_ID"]


def test_kafka__every_listener_has_a_protocol_and_only_broker_listeners_are_advertised(kafka_env):
    protocols = dict(item.split(":") for item in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    declared = listeners(kafka_env["KAFKA_LISTENERS"])
    advertised = listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])

    assert set(declared) <= set(protocols)
    assert set(advertised) <= set(declared)
    assert kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert all(advertised[name][1] == declared[name][1] for name in advertised)


def test_kafka__internal_topics_fit_one_broker_and_topics_are_created_by_the_platform(kafka_env):
    replication = {k: int(v) for k, v in kafka_env.items() if k.endswith(("REPLICATION_FACTOR", "MIN_ISR", "INSYNC_REPLICAS"))}

    assert replication and all(value == 1 for value in replication.values())
    assert "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR" in replication
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_kafka__cluster_id_is_a_base64url_uuid(kafka_env):
    cluster_id = kafka_env["CLUSTER_ID"]

    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except (binascii.Error, ValueError) as error:
        pytest.fail(f"CLUSTER_ID {cluster_id!r} is not base64url: {error}")
    assert len(cluster_id) == 22 and len(raw) == 16


def test_platform_services__reach_kafka_on_its_advertised_internal_listener(services, kafka_env):
    advertised = listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])[kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]]

    for name in APP_SERVICES:
        assert resolved_env(services[name])["TOUCHPOINTS_KAFKA"] == f"{advertised[0]}:{advertised[1]}", name


def test_platform_services__use_kurrentdb_on_its_node_port_without_tls(services):
    kurrent = services["kurrentdb"]["environment"]

    for name in APP_SERVICES:
        store = resolved_env(services[name])["TOUCHPOINTS_STORE"]
        assert store.startswith(f"esdb://kurrentdb:{kurrent['KURRENTDB_NODE_PORT']}"), name
        assert "tls=false" in store.lower() and str(kurrent["KURRENTDB_INSECURE"]).lower() == "true"


def test_every_touchpoints_variable__is_a_documented_setting_the_code_accepts(services):
    documented = documented_settings()

    for name in APP_SERVICES:
        env = resolved_env(services[name])
        used = {key for key in env if key.startswith("TOUCHPOINTS_")}
        assert used <= documented, f"{name}: undocumented {sorted(used - documented)}"
        settings = Settings.from_env(env)
        assert settings.kafka_bootstrap == ["kafka:9092"] and settings.partitions >= 1


def test_service_commands__are_commands_of_the_touchpoints_cli(services):
    parser = build_parser()

    for name in APP_SERVICES:
        args = parser.parse_args(services[name]["command"])
        assert callable(args.handler), name


def test_relay__is_a_single_container_keeping_its_checkpoint_in_a_named_volume(compose, services):
    relay = services["relay"]
    data = resolved_env(relay)["TOUCHPOINTS_DATA"]

    assert relay.get("deploy", {}).get("replicas", 1) == 1
    assert data in {volume.split(":")[1] for volume in relay["volumes"]}
    assert {volume.split(":")[0] for volume in relay["volumes"]} <= set(compose["volumes"])


def test_worker__scales_without_a_fixed_container_name(services):
    worker = services["worker"]

    assert "container_name" not in worker
    assert worker["deploy"]["replicas"] >= 1
    assert "ports" not in worker


def test_api__publishes_the_port_it_listens_on(services):
    api = services["api"]
    env = resolved_env(api)

    assert f"{env['TOUCHPOINTS_PORT']}:{env['TOUCHPOINTS_PORT']}" in api["ports"]
    assert env["TOUCHPOINTS_HOST"] == "0.0.0.0"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_services__start_after_healthy_dependencies_and_the_topics(services):
    for name in ("relay", "worker"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == depends["kurrentdb"]["condition"] == "service_healthy", name
        assert depends["topics"]["condition"] == "service_completed_successfully", name
    assert services["kafka"]["healthcheck"]["test"] and services["kurrentdb"]["healthcheck"]["test"]
    assert services["topics"]["restart"] == "no"


def test_stateful_services__keep_their_data_in_declared_named_volumes(compose, services):
    mounts = {
        "kafka": services["kafka"]["environment"]["KAFKA_LOG_DIRS"],
        "kurrentdb": "/var/lib/kurrentdb",
    }

    for name, path in mounts.items():
        volumes = dict(volume.split(":")[::-1] for volume in services[name]["volumes"])
        assert volumes.get(path) in compose["volumes"], name


def test_dockerfile__installs_the_project_on_python_311_slim_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)

    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["touchpoints"\]', dockerfile, re.MULTILINE)


def test_dockerignore__keeps_the_virtualenv_and_data_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".venv", ".git", "data"} <= ignored


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config__accepts_the_file():
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (no container tooling here)")

    checked = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                             capture_output=True, text=True, cwd=ROOT)

    assert checked.returncode == 0, checked.stderr
