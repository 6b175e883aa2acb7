"""The browser library, ``@segment/analytics-next``, in headless Chromium: loaded from npm's
files with its settings inline and ``apiHost`` pointed at a real server, so nothing comes
from Segment's CDN (every request off the server's origin is refused). The landing page
carries utm parameters; the customer's timeline and the first-contact view show the journey
with the channel the rules derived.

``@segment/analytics-next`` is installed by npm into ``tests/.sdk/browser`` by the
``analytics_next`` fixture (``make test-sdks`` does the same ahead of time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consumers.helpers import headless_chromium
from tests.consumers.api.test_tracking_sdks import LANDING, access, assert_journey_found, platform, read_views

__all__ = ["access", "platform", "read_views"]  # fixtures shared with the other SDK tests

pytestmark = pytest.mark.slow

BROWSER_FOLDER = Path(__file__).resolve().parents[2] / ".sdk" / "browser"
BROWSER_PACKAGE = "@segment/analytics-next@1"
BUNDLES = BROWSER_FOLDER / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Spring</title>
<script src="/sdk/index.js"></script></head><body><p>spring sale</p></body></html>"""

JOURNEY = """async ([writeKey, apiHost]) => {
  const segment = { apiKey: writeKey, apiHost, protocol: 'http' }
  const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load(
    { writeKey, cdnURL: location.origin + '/sdk-cdn', cdnSettings: { integrations: { 'Segment.io': segment } } },
    { integrations: { 'Segment.io': segment } },
  )
  await analytics.page()
  await analytics.track('Product Viewed', { sku: 's-1' })
  await analytics.identify('c-web', { plan: 'pro' })
  await analytics.track('Order Completed', { order_id: 'o-web', revenue: 42.5, currency: 'EUR' })
}"""


@pytest.fixture(scope="module")
def analytics_next() -> Path:
    if not (BUNDLES / "index.js").is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is needed to install @segment/analytics-next")
        BROWSER_FOLDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(BROWSER_FOLDER), "--no-audit", "--no-fund",
                        BROWSER_PACKAGE], check=True, capture_output=True, timeout=300)
    return BUNDLES


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


def test_analytics_next__in_chromium_sends_a_journey_the_views_show(browser, analytics_next, platform, read_views):
    url, key = platform
    landing = url + "/landing?" + LANDING.split("?", 1)[1]
    refused: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    def serve(route: Any) -> None:
        requested = route.request.url
        if not requested.startswith(url):
            refused.append(requested)
            route.abort()
        elif requested.startswith(url + "/landing"):
            route.fulfill(body=PAGE, content_type="text/html")
        elif "/sdk" in requested:  # the bundle and the chunks it loads, from npm's files
            name = re.sub(r"[?#].*", "", requested).rsplit("/", 1)[1]
            route.fulfill(path=str(analytics_next / name), content_type="application/javascript")
        else:
            route.continue_()  # the tracking API itself

    page.route("**/*", serve)
    page.goto(landing)
    page.evaluate(JOURNEY, [key, url.split("://", 1)[1]])
    context.close()

    assert problems == [] and refused == []
    assert_journey_found(read_views("c-web"), "o-web")
