"""A live platform for the streaming integration tests (one per test module).

``live_platform`` runs ``consumers.platform.Platform`` on the session broker: the API
and view feed in this process, the relay and a Faust worker as real child
processes. The broker is restarted first, so a module starts from empty topics,
groups and offsets whatever ran before it on the shared broker. Its admin key is
``PLATFORM_ADMIN_KEY``; the ``api`` client sends it (``PLATFORM_HEADERS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from application.access.keys import new_key
from application.ingest import Ingestor
from application.replay import replay
from application.verify_views import compare_with_live_views
from application.settings import Settings
from events.factory import open_store
from events.registry import REGISTRY
from projections.views import all_views
from consumers.platform import Platform

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


# The admin key every test platform gets at its first start (TOUCHPOINTS_ADMIN_KEY), and its headers.
PLATFORM_ADMIN_KEY = new_key()
PLATFORM_HEADERS = {"Authorization": f"Bearer {PLATFORM_ADMIN_KEY}"}


def platform_settings(data: Path, bootstrap: str, *, partitions: int = 3,
                      views_journeys_on_disk: bool = False) -> Settings:
    return Settings(
        data=data, host="127.0.0.1", port=0, demo=False, store_url=f"sqlite:///{data / 'events.db'}",
        kafka=bootstrap, partitions=partitions, log_level="INFO", admin_key=SecretStr(PLATFORM_ADMIN_KEY),
        views_journeys_on_disk=views_journeys_on_disk,
    )


@pytest.fixture(scope="module")
def live_platform(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    kafka_broker.restart()
    data = tmp_path_factory.mktemp("platform")
    platform = Platform(platform_settings(data, kafka_broker.bootstrap))
    platform.start()
    try:
        platform.wait_ready()
        yield platform
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def api(live_platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_platform.base_url, headers=PLATFORM_HEADERS, timeout=10) as client:
        yield client


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def replayed_population(store_url: str) -> Any:
    """What a replay of the whole log gives: the pure fold over ``read_all``."""
    store = open_store(store_url)
    try:
        return replay(store).population
    finally:
        store.close()


def live_journeys(platform: Platform) -> dict[str, Any]:
    with platform.views.locked():
        return {key: journey.to_bytes() for key, journey in platform.views.population.journeys.items()}


def replay_journeys(platform: Platform) -> dict[str, Any]:
    population = replayed_population(platform.settings.store_url)
    return {key: journey.to_bytes() for key, journey in population.journeys.items()}


def assert_views_converge(platform: Platform, timeout: float = 60.0) -> None:
    """The live views reach exactly what a replay of the log gives: the same journey per
    identity (so nothing lost and nothing counted twice) and the same view documents, both
    computed from the population and as the live views serve them."""
    deadline = time.monotonic() + timeout
    expected = replay_journeys(platform)
    while live_journeys(platform) != expected:
        if time.monotonic() > deadline:
            live = live_journeys(platform)
            missing = sorted(set(expected) - set(live))[:5]
            differ = sorted(k for k in expected if k in live and live[k] != expected[k])[:5]
            raise AssertionError(
                f"live views did not converge in {timeout:.0f} s: {len(live)} identities live, "
                f"{len(expected)} replayed; missing e.g. {missing}; different e.g. {differ}"
            )
        time.sleep(0.1)
    with platform.views.locked():
        live_documents = all_views(platform.views.population, now=NOW)
    assert live_documents == all_views(replayed_population(platform.settings.store_url), now=NOW)
    # and the documents the API serves (maintained from contributions) equal the replay's
    store = open_store(platform.settings.store_url)
    try:
        served = compare_with_live_views(store, platform.views, attempts=1)
    finally:
        store.close()
    assert served.same, f"served documents differ from a replay: {served.differing}"


def append_events(platform: Platform, items: list[dict[str, Any]], *, batch: int = 1000) -> int:
    """Append wire-format events straight to the store (as a bulk ingest would)."""
    store = open_store(platform.settings.store_url)
    try:
        ingestor = Ingestor(store)
        for start in range(0, len(items), batch):
            ingestor.append([REGISTRY.validate(item) for item in items[start:start + batch]])
    finally:
        store.close()
    return len(items)
