"""What projections fold: a decoded event plus where and when the log holds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.models import Event


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    position: int  # global position in the log (ordered, not dense): breaks ties in occurred_at
    recorded_at: datetime  # when the log learned it: the "known at" clock of audit views
    stream: str  # the identity stream, e.g. "customer-42" or "anonymous-instagram:@anna"
    event: Event
