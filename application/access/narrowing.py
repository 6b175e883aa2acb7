"""What an ``emit`` key narrowed to a source and event types may append: pure checks over a
decoded batch, before anything of it is stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from application.access.keys import Principal

# Refusals listed in an answer; the count says how many there were in all.
LISTED_REFUSALS = 100


@dataclass(frozen=True)
class Refusal:
    index: int  # 0-based position of the item in the request
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "reason": self.reason}


def refusals(principal: Principal, types: Sequence[str], bodies: Sequence[bytes]) -> list[Refusal]:
    """Every item ``principal`` may not append, in request order (empty: all allowed).
    ``types[i]`` is item i's wire type and ``bodies[i]`` its canonical JSON body (read only
    when the key is narrowed to a source)."""
    allowed_types, source = principal.types, principal.source
    found: list[Refusal] = []
    if allowed_types is None and source is None:
        return found
    for index, kind in enumerate(types):
        if allowed_types is not None and kind not in allowed_types:
            found.append(Refusal(index, f"type {kind!r} is not one this key may write "
                                        f"({', '.join(sorted(allowed_types))})"))
        elif source is not None:
            sent = orjson.loads(bodies[index]).get("source")
            if sent != source:
                found.append(Refusal(index, f"source {sent!r} is not this key's source {source!r}"))
    return found


def refusal_document(principal: Principal, found: list[Refusal], count: int) -> dict[str, object]:
    """The 403 answer: the first ``LISTED_REFUSALS`` refused items and how many there were."""
    first = found[0]
    return {
        "error": "forbidden",
        "detail": f"{len(found)} of {count} events are outside what {principal.label} may write "
                  f"(first: item {first.index}: {first.reason}); nothing was stored",
        "refused": [refusal.as_dict() for refusal in found[:LISTED_REFUSALS]],
        "refused_count": len(found),
        "accepted": 0,
    }
