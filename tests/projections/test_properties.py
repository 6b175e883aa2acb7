"""Properties of the projections over generated event logs (hypothesis)."""

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import population
from projections.attribution import MODELS
from projections.journey import IdentityJourney
from projections.views import all_views
from tests.projections.spec import NOW, consent, fold, link, logged, merge, order, refund, touch

ANONS = ("a1", "a2", "a3")
CUSTOMERS = ("c1", "c2", "c3")
CHANNELS = ("ads", "email", "store")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def event_logs(draw, min_size=1, max_size=16):
    """Events over a few people; every event at its own time (ties are position's business)."""
    offsets = draw(st.lists(st.integers(0, 90 * 24 * 60), min_size=min_size, max_size=max_size, unique=True))
    events = []
    for offset in offsets:
        at = (START + timedelta(minutes=offset)).isoformat()
        who = draw(st.sampled_from([{"anon": a} for a in ANONS] + [{"customer": c} for c in CUSTOMERS]))
        kind = draw(st.sampled_from(["touch", "touch", "touch", "order", "refund", "link", "merge", "consent"]))
        if kind == "touch":
            campaign = draw(st.sampled_from([None, "spring", "autumn"]))
            source = draw(st.sampled_from([None, "google", "newsletter"]))
            events.append(touch(draw(st.sampled_from(CHANNELS)), at=at, campaign=campaign, source=source, **who))
        elif kind == "order":
            order_id = draw(st.sampled_from(["o1", "o2", "o3"]))
            revenue = draw(st.sampled_from(["10", "25.5", "99.99"]))
            events.append(order(order_id, revenue, at=at, **who))
        elif kind == "refund":
            events.append(refund(draw(st.sampled_from(["o1", "o2"])), draw(st.sampled_from(["5", "30"])), at=at, **who))
        elif kind == "link":
            events.append(link(draw(st.sampled_from(ANONS)), draw(st.sampled_from(CUSTOMERS)), at=at))
        elif kind == "merge":
            duplicate, survivor = draw(st.lists(st.sampled_from(CUSTOMERS), min_size=2, max_size=2, unique=True))
            events.append(merge(duplicate, survivor, at=at))
        else:
            events.append(consent(draw(st.sampled_from(["marketing", "analytics"])), draw(st.booleans()), at=at, **who))
    return events


def views_of(entries):
    return all_views(fold(entries), now=NOW)


def without_positions(document):
    if isinstance(document, dict):
        return {k: without_positions(v) for k, v in document.items() if k != "position"}
    if isinstance(document, list):
        return [without_positions(v) for v in document]
    return document


@PROPERTY
@given(events=event_logs(), data=st.data())
def test_property__any_arrival_order_of_the_same_logged_events_gives_the_same_views(events, data):
    entries = logged(events)
    shuffled = data.draw(st.permutations(entries))

    assert views_of(shuffled) == views_of(entries)


@PROPERTY
@given(events=event_logs(), data=st.data())
def test_property__events_arriving_in_another_order_give_the_same_views(events, data):
    arrival = data.draw(st.permutations(events))

    assert without_positions(views_of(logged(arrival))) == without_positions(views_of(logged(events)))


@PROPERTY
@given(events=event_logs())
def test_property__a_redelivered_event_changes_nothing(events):
    entries = logged(events)

    assert views_of(entries + entries) == views_of(entries)


@PROPERTY
@given(events=event_logs())
def test_property__every_models_credits_add_up_to_the_attributed_totals(events):
    documents = views_of(logged(events))

    for model in MODELS:
        document = documents[f"attribution_{model}"]
        rows = document["rows"]
        assert math.fsum(r["conversions"] for r in rows) == pytest.approx(
            document["conversions"], abs=1e-4 * (len(rows) + 1)
        )
        assert math.fsum(r["value"] for r in rows) == pytest.approx(
            document["value"], abs=0.005 * (len(rows) + 1)
        )


@PROPERTY
@given(events=event_logs(), anon=st.sampled_from(ANONS), customer=st.sampled_from(CUSTOMERS),
       minute=st.integers(0, 90 * 24 * 60))
def test_property__linking_an_identity_never_loses_a_touch(events, anon, customer, minute):
    at = (START + timedelta(minutes=minute, seconds=30)).isoformat()
    before = fold(logged(events))
    after = fold(logged([*events, link(anon, customer, at=at)]))

    touches_before = sorted(t for g in before.groups() for t in g.touches)
    assert sorted(t for g in after.groups() for t in g.touches) == touches_before
    own = before.journeys.get(f"anonymous-{anon}")
    if own is not None:
        group = population.group_summary(after, population.resolve(after, anon))
        assert set(own.touches) <= set(group.touches)


@PROPERTY
@given(events=event_logs())
def test_property__a_journey_round_trips_through_bytes(events):
    journeys: dict[str, IdentityJourney] = {}
    for entry in logged(events):
        journeys.setdefault(entry.stream, IdentityJourney(entry.stream)).apply(entry)

    for journey in journeys.values():
        restored = IdentityJourney.from_bytes(journey.to_bytes())
        assert restored == journey and restored.to_bytes() == journey.to_bytes()


@PROPERTY
@given(events=event_logs(), data=st.data())
def test_property__applying_per_identity_folds_equals_the_full_fold(events, data):
    entries = logged(events)
    journeys: dict[str, IdentityJourney] = {}
    stale: dict[str, IdentityJourney] = {}
    for entry in entries:
        journey = journeys.setdefault(entry.stream, IdentityJourney(entry.stream))
        stale.setdefault(entry.stream, IdentityJourney.from_bytes(journey.to_bytes()))
        journey.apply(entry)
    live = population.initial_state()
    for key in data.draw(st.permutations(sorted(journeys))):
        population.apply_journey(live, key, stale[key])
        all_views(live, now=NOW)  # the view server answers between updates
        population.apply_journey(live, key, IdentityJourney.from_bytes(journeys[key].to_bytes()))

    assert all_views(live, now=NOW) == views_of(entries)


@PROPERTY
@given(events=event_logs(min_size=2), data=st.data())
def test_property__querying_midway_does_not_change_the_final_views(events, data):
    entries = logged(events)
    cut = data.draw(st.integers(1, len(entries) - 1))
    pop = fold(entries[:cut])
    all_views(pop, now=NOW)

    fold(entries[cut:], pop)

    assert all_views(pop, now=NOW) == views_of(entries)
