"""What attribute() accepts and refuses: models, half-life, malformed paths, empty input; GC state."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from tests.projections.attribution.attribution_spec import converted, given, prospect, then_credits

from projections.attribution import MODELS, Path, attribute, attribute_all


def test_unknown_model__is_refused_naming_the_field_and_the_accepted_models():
    with pytest.raises(ValueError) as error:
        attribute([converted("a")], "u_shaped")
    message = str(error.value)
    assert message.startswith("model:") and "'u_shaped'" in message
    assert all(name in message for name in MODELS)


@pytest.mark.parametrize("half_life", [0, -7.0, math.nan, math.inf, True, "7"])
def test_half_life__not_a_positive_finite_number_is_refused(half_life):
    with pytest.raises(ValueError, match=r"^half_life_days: must be a finite number of days > 0"):
        attribute([converted("a")], "time_decay", half_life_days=half_life)


def test_half_life__is_checked_for_every_model():
    with pytest.raises(ValueError, match=r"^half_life_days:"):
        attribute([converted("a")], "linear", half_life_days=0)


BAD_PATHS = [
    (Path((("a", 1.0),), True, -5.0), r"paths\[1\]\.value: must be a finite number >= 0"),
    (Path((("a", 1.0),), True, math.nan), r"paths\[1\]\.value: must be a finite number >= 0"),
    (Path((("a", 1.0),), True, "12"), r"paths\[1\]\.value: must be a finite number >= 0"),
    (Path((("a", 1.0),), True, 10**400), r"paths\[1\]\.value: must be a finite number >= 0"),
    (Path((("a", 1.0),), False, 3.0), r"paths\[1\]\.value: must be 0\.0 for a non-converting path"),
    (Path((("a", 1.0),), 1, 3.0), r"paths\[1\]\.converted: must be True or False"),
    (Path([("a", 1.0)], True, 3.0), r"paths\[1\]\.touches: must be a tuple"),
    (Path((["a", 1.0],), True, 3.0), r"paths\[1\]\.touches\[0\]: must be a \(label, age_days\) pair"),
    (Path((("a", 1.0, 2.0),), True, 3.0), r"paths\[1\]\.touches\[0\]: must be a \(label, age_days\) pair"),
    (Path((("a", 2.0), ("",  1.0)), True, 3.0), r"paths\[1\]\.touches\[1\]\.label: must be a non-empty string"),
    (Path(((None, 1.0),), False, 0.0), r"paths\[1\]\.touches\[0\]\.label: must be a non-empty string"),
    (Path((("a", -1.0),), True, 3.0), r"paths\[1\]\.touches\[0\]\.age_days: must be a finite number >= 0"),
    (Path((("a", math.inf),), True, 3.0), r"paths\[1\]\.touches\[0\]\.age_days: must be a finite number >= 0"),
    (Path((("a", "1"),), True, 3.0), r"paths\[1\]\.touches\[0\]\.age_days: must be a finite number >= 0"),
    (Path((("a", 10**400),), True, 3.0), r"paths\[1\]\.touches\[0\]\.age_days: must be a finite number >= 0"),
    (Path((("a", 1.0), ("b", 2.0)), True, 3.0), r"paths\[1\]\.touches\[1\]\.age_days: touches must be oldest first"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_PATHS)
def test_malformed_path__is_refused_naming_the_path_and_field(bad, message):
    with pytest.raises(ValueError, match=message):
        attribute([converted("a", "b"), bad, converted("c")], "linear")


def test_malformed_path__only_the_first_one_is_named():
    bad_value = Path((("a", 1.0),), False, 2.0)
    with pytest.raises(ValueError, match=r"^paths\[0\]\.value"):
        attribute([bad_value, Path((("a", -1.0),), True, 1.0)], "markov")


def test_ages_in_order__are_checked_inside_each_path_not_across_paths():
    result = given(converted(("a", 1.0)), converted(("b", 9.0), ("c", 2.0))).when("linear")
    then_credits(result, {"a": (1.0, 100.0), "b": (0.5, 50.0), "c": (0.5, 50.0)})


def test_numpy_numbers_and_str_subclasses__are_accepted_like_plain_ones():
    class Channel(str):
        pass

    odd = Path(((Channel("a"), np.float64(3.0)), ("b", 1)), True, np.float64(10.0))
    then_credits(given(odd).when("linear"), {"a": (0.5, 5.0), "b": (0.5, 5.0)})


def test_integer_values_and_ages__are_accepted():
    then_credits(given(Path((("a", 2), ("b", 0)), True, 10)).when("linear"), {"a": (0.5, 5.0), "b": (0.5, 5.0)})


@pytest.mark.parametrize("model", MODELS)
def test_no_paths__give_zero_totals_and_no_credits(model):
    result = attribute([], model)
    assert (result.model, result.conversions, result.value, result.unattributed_conversions) == (model, 0, 0.0, 0)
    assert result.credits == {} and result.notes == ()


@pytest.mark.parametrize("model", MODELS)
def test_only_prospects_and_empty_paths__give_zero_credits(model):
    result = attribute([prospect("a"), prospect(), converted(value=3.0)], model)
    assert (result.conversions, result.unattributed_conversions, result.unattributed_value) == (0, 1, 3.0)
    then_credits(result, {"a": (0.0, 0.0)})


def test_attribute_all__equals_each_model_run_alone():
    paths = [converted("a", "b", value=7.0), converted(("b", 3.0), ("c", 1.0), value=5.0), prospect("c", "a")]
    together = attribute_all(paths, half_life_days=3.0)
    assert list(together) == list(MODELS)
    assert together == {model: attribute(paths, model, half_life_days=3.0) for model in MODELS}


def test_attribute_all__refuses_an_unknown_model_before_doing_any_work():
    with pytest.raises(ValueError, match=r"^model: unknown attribution model 'nope'"):
        attribute_all([Path((("a", -1.0),), True, 1.0)], ["linear", "nope"])


def test_paths__a_generator_is_accepted():
    result = attribute((path for path in [converted("a")]), "first_touch")
    then_credits(result, {"a": (1.0, 100.0)})


@pytest.mark.parametrize("enabled", [True, False])
def test_cyclic_gc__is_left_as_the_caller_had_it(enabled):
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        attribute_all([converted("a", "b"), prospect("b")])
        with pytest.raises(ValueError):
            attribute([Path((("a", -1.0),), True, 1.0)], "linear")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
