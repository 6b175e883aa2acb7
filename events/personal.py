"""Which fields of an event identify a person: what ingestion seals (``application.privacy``).

A personal field is named by its path in the event (``("anonymous_id",)``,
``("data", "handle")``) and a *kind*, which keeps pseudonyms of equal text apart across
meanings (a handle ``anna`` and a customer id ``anna`` are different people's data).

* ``anonymous_id`` of every type: cookies, device ids, social handles, email hashes.
* ``customer_id`` (and a merge's ``duplicate_customer_id``) only where the deployment says
  customer ids are personal (``customer_ids=True``): by default they are the emitters'
  opaque account numbers, kept as they are so top-customer lists stay readable. It is one
  choice for the whole log: an id sealed in one event and not in another would be two
  people.
* The social handle of social touches; the free text of support touches (``reason``).

Pages' urls, referrers and titles, email subjects and ad urls are not declared: they
describe content, not people (a url carrying an email in its query string is the
emitter's bug, not something the platform can find).
"""

from __future__ import annotations

from dataclasses import dataclass

ANONYMOUS = "anonymous"
CUSTOMER = "customer"
HANDLE = "handle"
TEXT = "text"
IDENTITY_KINDS = frozenset({ANONYMOUS, CUSTOMER})


@dataclass(frozen=True, slots=True)
class PersonalField:
    """One personal field: where it is in the event and what kind of value it holds."""

    path: tuple[str, ...]
    kind: str

    @property
    def in_data(self) -> bool:
        return self.path[0] == "data"


ANONYMOUS_ID = PersonalField(("anonymous_id",), ANONYMOUS)
CUSTOMER_ID = PersonalField(("customer_id",), CUSTOMER)

# Fields inside ``data``, by wire type.
_DATA_FIELDS: dict[str, tuple[PersonalField, ...]] = {
    "social_followed": (PersonalField(("data", "handle"), HANDLE),),
    "social_engaged": (PersonalField(("data", "handle"), HANDLE),),
    "support_called": (PersonalField(("data", "reason"), TEXT),),
    "support_ticket_opened": (PersonalField(("data", "reason"), TEXT),),
}
_CUSTOMER_DATA_FIELDS: dict[str, tuple[PersonalField, ...]] = {
    "customers_merged": (PersonalField(("data", "duplicate_customer_id"), CUSTOMER),),
}


def personal_fields(type_name: str, *, customer_ids: bool) -> tuple[PersonalField, ...]:
    """The personal fields of events of ``type_name`` (envelope first, then ``data``)."""
    fields = [ANONYMOUS_ID]
    if customer_ids:
        fields.append(CUSTOMER_ID)
        fields.extend(_CUSTOMER_DATA_FIELDS.get(type_name, ()))
    fields.extend(_DATA_FIELDS.get(type_name, ()))
    return tuple(fields)
