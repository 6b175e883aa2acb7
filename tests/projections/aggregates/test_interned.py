"""Equal values share one copy while any group holds them."""

from projections.aggregates.interned import InternedValues


def test_interned_values__an_equal_value_gets_the_copy_held():
    interned = InternedValues()
    held = ("ads", "seo")
    interned.add(held)

    assert interned.get(tuple(["ads", "seo"])) is held


def test_interned_values__the_copy_is_held_while_any_holder_remains():
    interned = InternedValues()
    held = ("ads",)
    interned.add(held)
    interned.add(("ads",))

    interned.remove(("ads",))

    assert interned.get(tuple(["ads"])) is held


def test_interned_values__a_value_no_one_holds_is_let_go():
    interned = InternedValues()
    interned.add(("ads",))

    interned.remove(("ads",))

    fresh = tuple(["ads"])
    assert interned.get(fresh) is fresh and len(interned) == 0
