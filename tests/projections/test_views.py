import orjson

from projections.attribution import MODELS
from projections.views import VERSION, VERSIONS, all_views
from tests.projections.spec import NOW, given, link, order, refund, touch

SPEC = given(
    touch("instagram", at="2024-01-01", anon="ig:@anna", campaign="spring"),
    touch("email", at="2024-01-05", customer="42"),
    order("o-1", "120.00", at="2024-01-10", customer="42"),
    refund("o-1", "20.00", at="2024-01-12", customer="42"),
    touch("ads", at="2024-02-01", anon="cookie-9"),
    link("ig:@anna", "42", at="2024-01-11"),
)


def test_all_views__holds_every_population_view_and_every_attribution_model():
    documents = all_views(SPEC.population(), now=NOW)

    assert {f"attribution_{model}" for model in MODELS} <= set(documents)
    assert {"funnel", "first_contact_by_channel", "first_contact_by_campaign", "conversion_time", "paths",
            "top_customers", "prospects", "data_quality"} <= set(documents)


def test_all_views__documents_are_plain_json_and_encode_identically_every_time():
    population = SPEC.population()

    first = orjson.dumps(all_views(population, now=NOW), option=orjson.OPT_SORT_KEYS)
    second = orjson.dumps(all_views(SPEC.population(), now="2025-01-01"), option=orjson.OPT_SORT_KEYS)

    assert first == second
    assert orjson.loads(first)["funnel"]["converted"] == 1


def test_all_views__the_version_grows_with_any_views_version():
    assert VERSION == sum(VERSIONS.values()) and set(VERSIONS) >= {"population", "first_contact", "timeline"}
