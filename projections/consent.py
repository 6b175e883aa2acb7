"""Consent to analytics: whom the person-level views may name.

A person (a group: every identity linked to them) whose latest ``consent_changed`` for the
purpose ``analytics`` says ``granted: false`` is *not listed*: left out of the rows of top
customers, prospects and data quality, and their timeline is refused. "Latest" is by
``(occurred_at, position)`` over all their identities (``group.summarize``), so a refusal
at a cookie banner follows the cookie into the customer it is linked to, and a later grant
brings the person back. It holds from the moment of the withdrawal on: a view as of an
earlier moment (``as_of``) folds no such event and lists them as it did then. Someone who
never said anything about analytics is listed (no consent is assumed to be required).

Aggregates keep counting them: list totals (customers, prospects, revenue, each data quality
section's count and amount), quintile scores, the funnel, attribution credits, first
contact, conversion times and paths. None of those shows a person, and leaving people out
of them would make revenue and counts disagree with the books and move with every consent
change. An erasure (``customer_erased``) is not a withdrawal: it makes the person's values
unreadable, and their pseudonyms stay listed.
"""

from __future__ import annotations

from collections.abc import Mapping

from projections.group import GroupSummary
from projections.journey import ConsentStamp

ANALYTICS = "analytics"


def withdrawn(consents: Mapping[str, ConsentStamp]) -> bool:
    """Whether the latest analytics stamp among ``consents`` withdraws consent."""
    stamp = consents.get(ANALYTICS)
    return stamp is not None and not stamp[2]


def listed(group: GroupSummary) -> bool:
    """Whether person-level views may name ``group``."""
    return not withdrawn(group.consents)
