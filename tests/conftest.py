"""Shared session fixtures.

``kafka_broker``: ONE bundled tansu broker for the whole test session, on a free
loopback port. It yields the ``streams.broker.BundledBroker`` itself:
``.bootstrap`` (``"127.0.0.1:PORT"``), ``.restart()`` (kill + start on the same
port; everything in it is lost), ``.stop()``. A test that stops it need not
start it again: the broker is brought back before the next test.

Topics are shared by every test in the session: use unique topic names or
consumer groups per test (``unique_name``), or read from offsets you recorded.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from streams.broker import BundledBroker, free_port

__all__ = ["free_port"]

_session_broker: BundledBroker | None = None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundledBroker]:
    global _session_broker
    broker = BundledBroker(data_dir=tmp_path_factory.mktemp("kafka_broker"))
    broker.start()
    _session_broker = broker
    try:
        yield broker
    finally:
        _session_broker = None
        broker.close()


@pytest.fixture(autouse=True)
def _session_broker_running() -> Iterator[None]:
    """Bring the session broker back if a test stopped it (same port, empty)."""
    yield
    if _session_broker is not None and not _session_broker.running:
        _session_broker.start()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, for topics and consumer groups."""
    safe = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:40]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"
