"""Where a touch's source comes from, as the views by source see it: POST /v1/events keeps
the channel and source its emitter sent; the tracking API derives them with the channel
rules (``events.channels``: the utm source, else the referrer's host)."""

import base64

from fastapi.testclient import TestClient

from application.access import Scope, open_access
from application.replay import replay
from consumers.api.app import create_app
from events.registry import decode_recorded
from tests.conftest import wire_event

LANDING = "https://shop.example.com/spring?utm_source=google&utm_medium=cpc&utm_campaign=spring&gclid=abc"


def first_contacts_by_source(store) -> dict[str, int]:
    document = replay(store).live_views().view("first_contact", group_by="source").document
    return {row["source"]: row["reached"] for row in document["rows"]}


def test_native_event__keeps_its_explicit_channel_and_source_whatever_its_landing_url_says(api, store):
    event = wire_event(channel="instagram", source="ig-webhook",
                       data={"url": LANDING, "referrer": "https://www.google.com/"})

    response = api.post("/v1/events", json=event)

    assert response.status_code == 200
    [stored] = [decode_recorded(recorded).event for recorded in store.read_all()]
    assert (stored.channel, stored.source, stored.campaign) == ("instagram", "ig-webhook", None)
    assert first_contacts_by_source(store) == {"ig-webhook": 1}


def test_tracked_pages__count_under_their_utm_source_or_referrer_host(store, settings):
    access = open_access(settings.data)
    key, _ = access.create_key(name="website", scopes=frozenset({Scope.EMIT}))
    pages = [
        {"anonymousId": "a-1", "context": {"page": {"url": LANDING}}},
        {"anonymousId": "a-2", "context": {"page": {"url": "https://shop.example.com/",
                                                    "referrer": "https://news.example.org/story"}}},
        {"anonymousId": "a-3", "context": {"page": {"url": "https://shop.example.com/"}}},
    ]
    batch = [{"type": "page", "messageId": f"m-{n}", "timestamp": "2026-12-05T11:00:00Z", **page}
             for n, page in enumerate(pages)]

    with TestClient(create_app(store=store, settings=settings, access=access)) as client:
        response = client.post("/v1/batch", json={"batch": batch},
                               headers={"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()})
    access.close()

    assert response.status_code == 200
    assert first_contacts_by_source(store) == {"google": 1, "news.example.org": 1, "(direct)": 1}
