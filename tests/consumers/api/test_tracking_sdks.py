"""The real tracking SDKs pointed at a real server by their one host setting: each sends a
page with campaign parameters, a track, an identify and an order; the customer's timeline
and the first-contact view then show them with the channel the rules derived.

``segment-analytics-python`` (PyPI, the continuation of ``analytics-python``) is a test
dependency. ``@segment/analytics-node`` is installed by npm into ``tests/.sdk/node`` by the
``sdk_node`` fixture (``make test-sdks`` does the same ahead of time); without node or npm
that test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.access import Scope, open_access
from application.store_feed import load_views
from consumers.api.app import create_app

NODE_FOLDER = Path(__file__).resolve().parents[2] / ".sdk" / "node"
NODE_PACKAGE = "@segment/analytics-node@2"
LANDING = "https://shop.example/spring?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch"


@pytest.fixture
def access(settings):
    opened = open_access(settings.data)
    yield opened
    opened.close()


@pytest.fixture
def platform(store, settings, access, serve_app) -> Iterator[tuple[str, str]]:
    """A real server over the test's store: (its URL, an emit write key)."""
    key, _ = access.create_key(name="sdk", scopes=frozenset({Scope.EMIT}))
    with serve_app(create_app(store=store, settings=settings, access=access)) as url:
        yield url, key


@pytest.fixture
def read_views(store, settings, access) -> Callable[[str], dict[str, Any]]:
    """After the SDK flushed: the customer's timeline and the first-contact view, read over the API."""

    def read(customer_id: str) -> dict[str, Any]:
        key, _ = access.create_key(name="reader", scopes=frozenset({Scope.READ}))
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(store=store, settings=settings, views=load_views(store), access=access)) as api:
            timeline = api.get(f"/v1/customers/{customer_id}/timeline", headers=headers)
            first_contact = api.get("/v1/first-contact", headers=headers)
        assert timeline.status_code == first_contact.status_code == 200, (timeline.text, first_contact.text)
        return {"timeline": timeline.json(), "first_contact": first_contact.json()}

    return read


def assert_journey_found(found: dict[str, Any], order_id: str) -> None:
    timeline = found["timeline"]
    types = [event["type"] for event in timeline["events"]]
    assert {"page_viewed", "event_tracked", "identity_linked", "order_placed"} <= set(types), types
    page = next(event for event in timeline["events"] if event["type"] == "page_viewed")
    # the channel the rules derived from the landing URL's utm parameters
    assert (page["channel"], page["source"], page["campaign"]) == ("email", "newsletter", "spring-launch")
    assert timeline["first_contact"]["channel"] == "email" and timeline["first_order"]["order_id"] == order_id
    [row] = [row for row in found["first_contact"]["rows"] if row["channel"] == "email"]
    assert row["reached"] == row["converted"] == 1


def test_analytics_python__sends_a_journey_the_views_show(platform, read_views):
    from segment.analytics.client import Client

    url, key = platform
    errors: list[Any] = []
    client = Client(key, host=url, max_retries=0, on_error=lambda error, _: errors.append(error))

    client.page(anonymous_id="anon-py", name="Spring", properties={"url": LANDING, "referrer": "https://mail.example/"})
    client.track(anonymous_id="anon-py", event="Product Viewed", properties={"sku": "s-1"})
    client.identify(user_id="c-py", anonymous_id="anon-py", traits={"plan": "pro"})
    client.track(user_id="c-py", event="Order Completed",
                 properties={"order_id": "o-py", "revenue": 42.5, "currency": "EUR"})
    client.flush()
    client.shutdown()

    assert errors == []
    assert_journey_found(read_views("c-py"), "o-py")


@pytest.fixture(scope="session")
def sdk_node() -> Path:
    """``@segment/analytics-node`` installed into ``tests/.sdk/node`` (once; npm needs the network)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the analytics-node test")
    if not (NODE_FOLDER / "node_modules" / "@segment" / "analytics-node").is_dir():
        NODE_FOLDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(NODE_FOLDER), "--no-audit", "--no-fund", NODE_PACKAGE],
                       check=True, capture_output=True, timeout=300)
    return NODE_FOLDER


NODE_SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node')
const [host, writeKey, landing] = process.argv.slice(1)  // node -e: no script path
const analytics = new Analytics({ writeKey, host, maxRetries: 0, flushAt: 10, flushInterval: 100 })
const failures = []
analytics.on('error', (error) => failures.push(String(error && (error.reason || error.message || error.code))))
analytics.page({ anonymousId: 'anon-node', name: 'Spring',
  properties: { url: landing, referrer: 'https://mail.example/' } })
analytics.track({ anonymousId: 'anon-node', event: 'Product Viewed', properties: { sku: 's-1' } })
analytics.identify({ userId: 'c-node', anonymousId: 'anon-node', traits: { plan: 'pro' } })
analytics.track({ userId: 'c-node', event: 'Order Completed',
  properties: { order_id: 'o-node', revenue: 42.5, currency: 'EUR' } })
analytics.closeAndFlush({ timeout: 20000 }).then(() => {
  if (failures.length) { console.error(failures.join('\n')); process.exit(1) }
})
"""


def test_analytics_node__sends_a_journey_the_views_show(platform, read_views, sdk_node):
    url, key = platform

    sent = subprocess.run(["node", "-e", NODE_SCRIPT, url, key, LANDING], cwd=sdk_node, capture_output=True,
                          text=True, timeout=60)

    assert sent.returncode == 0, sent.stderr
    assert_journey_found(read_views("c-node"), "o-node")
