"""A deterministic generator of realistic multi-year customer journeys, in the wire format.

``generate(customers, seed)`` yields wire-format event dicts (what emitters send). The same
arguments always give the same events, byte for byte once encoded: ids come from the seeded
generator and every timestamp lies between ``start`` and ``end`` (fixed defaults, never "now").

The population mixes:

- prospects who never buy (social followers, newsletter subscribers, site visitors);
- one-time buyers and repeat buyers, some with refunds (often after a support contact);
- social follows and engagement long before a first order, ad clicks with campaigns, email
  opens/clicks, page views under cookies, store visits, support calls and tickets;
- anonymous touches (``instagram:@handle``, ``cookie:...``) linked to the customer later by
  ``identity_linked``; about a quarter of those links arrive late (after later events);
- a few duplicate customer records (a store account) merged by ``customers_merged``;
- consent changes (marketing e-mail granted at sign-up, some withdrawn later).

Events are emitted in blocks of ``BLOCK_CUSTOMERS`` customers, each block in arrival order
(the order a collector would have received them), so the output streams in constant memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from application.ingest import Ingestor
from application.privacy.mode import settle
from application.privacy.policy import ingest_registry
from application.settings import Settings
from events.models import Event
from events.registry import REGISTRY
from events.store import EventStore
from events.times import EPOCH, EPOCH_ORDINAL, date_text

DEFAULT_SEED = 7
DEFAULT_START = datetime(2022, 1, 1, tzinfo=timezone.utc)
DEFAULT_END = datetime(2025, 1, 1, tzinfo=timezone.utc)
BLOCK_CUSTOMERS = 1000

DAY = 86_400
SOCIAL_PLATFORMS = ("instagram", "instagram", "tiktok", "facebook")
AD_CHANNELS = ("google_ads", "google_ads", "facebook", "instagram", "tiktok")
VISIT_CHANNELS = ("organic_search", "organic_search", "direct", "direct", "referral")
REFERRERS = ("https://www.blogs-we-like.example/", "https://news.example.com/", "https://partner.example.org/")
PAGES = ("/", "/new", "/sale", "/collections/summer", "/collections/winter", "/product/sneaker-01",
         "/product/jacket-22", "/product/bag-07", "/about", "/stores")
STORES = ("store-berlin", "store-hamburg", "store-munich", "store-vienna")
SUPPORT_REASONS = ("delivery delayed", "wrong size", "damaged item", "payment question", "return request")
PROMO_BY_MONTH = ("new-year-sale", "new-year-sale", "spring-launch", "spring-launch", "spring-launch",
                  "summer-sale", "summer-sale", "summer-sale", "back-to-school", "autumn-collection",
                  "black-friday", "holiday-gifts")


def generate(
    customers: int,
    seed: int = DEFAULT_SEED,
    *,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
) -> Iterator[dict[str, Any]]:
    """Yield the wire-format events of ``customers`` people's journeys between ``start`` and ``end``."""
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end - start < timedelta(days=60):
        raise ValueError("end must be at least 60 days after start")
    rng = random.Random(seed)
    window = (int(start.timestamp()), int(end.timestamp()))
    for first in range(0, customers, BLOCK_CUSTOMERS):
        block: list[tuple[int, dict[str, Any]]] = []
        for index in range(first, min(first + BLOCK_CUSTOMERS, customers)):
            block.extend(_Journey(rng, index, window).events())
        block.sort(key=_arrival)  # stable: a journey's events keep their order on ties
        for _, event in block:
            yield event


def _arrival(item: tuple[int, dict[str, Any]]) -> int:
    return item[0]


class _Journey:
    """One person's events, as (arrival second, wire dict) pairs."""

    def __init__(self, rng: random.Random, index: int, window: tuple[int, int]):
        self.rng = rng
        self.index = index
        self.start, self.end = window
        self.customer_id = f"cust-{index:07d}"
        self.out: list[tuple[int, dict[str, Any]]] = []
        self.cookie = f"cookie:{rng.getrandbits(64):016x}"
        self.handle: str | None = None
        self.platform = ""
        self.email_allowed = False

    def events(self) -> list[tuple[int, dict[str, Any]]]:
        rng = self.rng
        span = self.end - self.start
        t = self.start + int(span * rng.random() ** 0.8 * 0.95)
        roll = rng.random()
        kind = "prospect" if roll < 0.42 else "buyer" if roll < 0.78 else "repeat"
        t = self._discovery(t, long=kind != "prospect")
        if kind == "prospect":
            self._prospect(t)
        else:
            self._buyer(t, orders=1 if kind == "buyer" else rng.randint(2, 8))
        return self.out

    # --- phases ---------------------------------------------------------------

    def _discovery(self, t: int, *, long: bool) -> int:
        """Anonymous touches before anyone knows who this is; returns the time they end."""
        rng = self.rng
        if rng.random() < 0.5:
            self.platform = rng.choice(SOCIAL_PLATFORMS)
            self.handle = f"{self.platform}:@{_handle(rng)}"
            self._social("social_followed", t)
            for _ in range(rng.randint(0, 6)):
                t += rng.randint(2, 45) * DAY
                self._social("social_engaged", t)
            if long:
                t += rng.randint(30, 300) * DAY
        if rng.random() < 0.55:
            for _ in range(rng.randint(1, 3)):
                t += rng.randint(1, 40) * DAY
                self._ad_click(t)
        if rng.random() < 0.6:
            t += rng.randint(1, 20) * DAY
            self._visit(t, rng.choice(VISIT_CHANNELS))
        return t

    def _prospect(self, t: int) -> None:
        rng = self.rng
        if rng.random() < 0.35:
            t += rng.randint(0, 30) * DAY
            self._subscribe(t, channel=rng.choice(VISIT_CHANNELS))
            self._emails(t, rng.randint(1, 6))
        elif rng.random() < 0.3:
            self._cookie_consent(t)
        if rng.random() < 0.15:
            t += rng.randint(5, 90) * DAY
            self._visit(t, "direct")

    def _buyer(self, t: int, orders: int) -> None:
        rng = self.rng
        if rng.random() < 0.4:
            t += rng.randint(0, 20) * DAY
            self._subscribe(t, channel=rng.choice(VISIT_CHANNELS))
            t = self._emails(t, rng.randint(1, 4))
        t += rng.randint(1, 30) * DAY
        in_store = rng.random() < 0.2
        if in_store:
            self._store_visit(t, self.customer_id)
        else:
            self._visit(t, rng.choice(("direct", "organic_search", "email" if self.email_allowed else "direct")))
        self._order(t + 600, store=in_store, first=True)
        if rng.random() < 0.03:
            self._duplicate_record(t)
        for _ in range(orders - 1):
            t += rng.randint(20, 200) * DAY
            if rng.random() < 0.5:
                t = self._emails(t, rng.randint(1, 3))
            if rng.random() < 0.3:
                self._ad_click(t, cookie=self.cookie)
            self._order(t + 900, store=rng.random() < 0.15, first=False)
        if self.email_allowed and rng.random() < 0.12:
            self._consent(t + rng.randint(10, 200) * DAY, "marketing_email", False)

    # --- touches ----------------------------------------------------------------

    def _social(self, type_: str, t: int) -> None:
        action = "follow" if type_ == "social_followed" else self.rng.choice(("like", "comment", "share", "story_reply"))
        data = {"platform": self.platform, "handle": self.handle.partition(":")[2], "action": action}  # type: ignore[union-attr]
        if type_ == "social_engaged":
            data["post_id"] = f"post-{self.rng.randint(1, 4000)}"
        self._emit(type_, t, anonymous_id=self.handle, channel=self.platform, source=f"{self.platform}-webhook", data=data)

    def _ad_click(self, t: int, cookie: str | None = None) -> None:
        rng = self.rng
        channel = rng.choice(AD_CHANNELS)
        campaign = _campaign(t)
        data = {
            "ad_id": f"ad-{rng.randint(1, 300)}",
            "ad_group": f"{campaign}-{rng.choice(('prospecting', 'retargeting', 'brand'))}",
            "cost": f"{rng.randint(5, 250) / 100:.2f}",
            "currency": "EUR",
            "url": f"https://shop.example.com{rng.choice(PAGES)}?utm_source={channel}&utm_campaign={campaign}",
        }
        self._emit("ad_clicked", t, anonymous_id=cookie or self.cookie, channel=channel, campaign=campaign,
                   source="ads-connector", data=data)
        self._page(t + rng.randint(2, 30), channel, campaign)

    def _visit(self, t: int, channel: str) -> None:
        for step in range(self.rng.randint(1, 4)):
            self._page(t + step * self.rng.randint(20, 240), channel, None)

    def _page(self, t: int, channel: str, campaign: str | None) -> None:
        data: dict[str, Any] = {"url": f"https://shop.example.com{self.rng.choice(PAGES)}"}
        if channel == "referral":
            data["referrer"] = self.rng.choice(REFERRERS)
        self._emit("page_viewed", t, anonymous_id=self.cookie, channel=channel, campaign=campaign,
                   source="web-tracker", data=data)

    def _subscribe(self, t: int, channel: str) -> None:
        """Signing up makes the person known: a CRM contact, its cookie linked at once."""
        self._emit("newsletter_subscribed", t, customer_id=self.customer_id, channel=channel,
                   source="web-forms", data={"list_id": "weekly"})
        self._consent(t, "marketing_email", True)
        self._link(t, self.cookie)
        self.email_allowed = True

    def _emails(self, t: int, count: int) -> int:
        rng = self.rng
        for _ in range(count):
            t += rng.randint(5, 35) * DAY
            if t >= self.end or not self.email_allowed:
                break
            campaign = f"newsletter-{_month(t)}"
            data = {"message_id": f"msg-{rng.getrandbits(40):010x}", "subject": campaign.replace("-", " ")}
            if rng.random() < 0.55:
                self._emit("email_opened", t, customer_id=self.customer_id, channel="email", campaign=campaign,
                           source="esp", data=data)
                if rng.random() < 0.35:
                    self._emit("email_clicked", t + 60, customer_id=self.customer_id, channel="email",
                               campaign=campaign, source="esp", data={**data, "url": "https://shop.example.com/new"})
                    self._page(t + 70, "email", campaign)
        return t

    def _store_visit(self, t: int, customer_id: str) -> None:
        data = {"store_id": self.rng.choice(STORES), "duration_minutes": self.rng.randint(5, 90)}
        self._emit("store_visited", t, customer_id=customer_id, channel="store", source="pos", data=data)

    def _order(self, t: int, *, store: bool, first: bool, customer_id: str | None = None) -> None:
        rng = self.rng
        order_id = f"ord-{rng.getrandbits(48):012x}"
        revenue = f"{rng.lognormvariate(4.2, 0.6):.2f}"
        self._emit("order_placed", t, customer_id=customer_id or self.customer_id, channel="store" if store else "web",
                   source="pos" if store else "checkout",
                   data={"order_id": order_id, "revenue": revenue, "currency": "EUR"})
        if first and customer_id is None:
            self._link_known_identities(t)
        roll = rng.random()
        if roll < 0.07:
            self._refund(t + rng.randint(3, 40) * DAY, order_id, revenue, customer_id or self.customer_id)
        elif roll < 0.13:
            self._support(t + rng.randint(1, 20) * DAY, customer_id or self.customer_id)

    def _refund(self, t: int, order_id: str, revenue: str, customer_id: str) -> None:
        """Most refunds follow a support contact; some are partial."""
        rng = self.rng
        if rng.random() < 0.8:
            self._support(t - DAY, customer_id)
        amount = revenue if rng.random() < 0.7 else f"{float(revenue) / 2:.2f}"
        self._emit("order_refunded", t, customer_id=customer_id, source="payments",
                   data={"order_id": order_id, "amount": amount, "currency": "EUR"})

    def _support(self, t: int, customer_id: str) -> None:
        rng = self.rng
        data: dict[str, Any] = {"ticket_id": f"tkt-{rng.getrandbits(32):08x}", "reason": rng.choice(SUPPORT_REASONS)}
        if rng.random() < 0.5:
            data["duration_seconds"] = rng.randint(60, 1800)
            self._emit("support_called", t, customer_id=customer_id, channel="support", source="helpdesk", data=data)
        else:
            self._emit("support_ticket_opened", t, customer_id=customer_id, channel="support", source="helpdesk",
                       data=data)

    def _link_known_identities(self, t: int) -> None:
        """Checkout logs the cookie in; a nightly identity-resolution job later matches the
        social handle, and a quarter of its links arrive weeks late."""
        if not self.email_allowed:
            self._link(t, self.cookie)
        if self.handle is not None and self.rng.random() < 0.7:
            late = self.rng.random() < 0.25
            self._link(t + DAY, self.handle, arrives=t + self.rng.randint(20, 120) * DAY if late else None,
                       source="identity-resolution")

    def _duplicate_record(self, t: int) -> None:
        """A store account opened before the online one; support merges them later."""
        duplicate = f"{self.customer_id}-pos"
        earlier = max(self.start, t - self.rng.randint(30, 200) * DAY)
        self._store_visit(earlier, duplicate)
        self._order(earlier + 300, store=True, first=False, customer_id=duplicate)
        self._emit("customers_merged", t + self.rng.randint(5, 60) * DAY, customer_id=self.customer_id,
                   source="crm", data={"duplicate_customer_id": duplicate})

    def _cookie_consent(self, t: int) -> None:
        self._emit("consent_changed", t, anonymous_id=self.cookie, source="cookie-banner",
                   data={"purpose": "analytics", "granted": self.rng.random() < 0.8})

    def _consent(self, t: int, purpose: str, granted: bool) -> None:
        self._emit("consent_changed", t, customer_id=self.customer_id, source="preference-center",
                   data={"purpose": purpose, "granted": granted})
        self.email_allowed = granted

    def _link(self, t: int, anonymous_id: str, *, arrives: int | None = None, source: str = "checkout") -> None:
        self._emit("identity_linked", t, customer_id=self.customer_id, anonymous_id=anonymous_id, source=source,
                   arrives=arrives)

    # --- output -----------------------------------------------------------------

    def _emit(
        self,
        type_: str,
        t: int,
        *,
        customer_id: str | None = None,
        anonymous_id: str | None = None,
        channel: str | None = None,
        campaign: str | None = None,
        source: str | None = None,
        data: dict[str, Any] | None = None,
        arrives: int | None = None,
    ) -> None:
        if not self.start <= t < self.end or (arrives is not None and arrives >= self.end):
            return
        event: dict[str, Any] = {
            "event_id": _uuid4_text(self.rng.getrandbits(128)),
            "type": type_,
            "occurred_at": _timestamp(t),
        }
        if customer_id is not None:
            event["customer_id"] = customer_id
        if anonymous_id is not None:
            event["anonymous_id"] = anonymous_id
        if channel is not None:
            event["channel"] = channel
        if campaign is not None:
            event["campaign"] = campaign
        if source is not None:
            event["source"] = source
        if data:
            event["data"] = data
        self.out.append((t if arrives is None else arrives, event))




def _timestamp(t: int) -> str:
    """RFC 3339 in UTC; the date part is cached because formatting dominates generation."""
    day, second = divmod(t, DAY)
    date = date_text(EPOCH_ORDINAL + day)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{date}T{hour:02d}:{minute:02d}:{second:02d}Z"


def _uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))`` without building the object."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (4 << 76) | (0x8000 << 48)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _month(t: int) -> str:
    return (EPOCH + timedelta(seconds=t)).strftime("%Y-%m")


def _campaign(t: int) -> str:
    moment = EPOCH + timedelta(seconds=t)
    return f"{PROMO_BY_MONTH[moment.month - 1]}-{moment.year}"


_SYLLABLES = ("an", "na", "lu", "ka", "mi", "jo", "el", "sa", "ri", "to", "be", "li", "mo", "xi", "de")


def _handle(rng: random.Random) -> str:
    name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
    return f"{name}{rng.randint(1, 9999)}"


def load_demo_if_empty(store: EventStore, settings: Settings, *, seed: int = DEFAULT_SEED) -> int:
    """Load ``settings.demo_customers`` customers' demo journeys when the store holds no
    event and ``settings.demo`` is on; returns the number of events stored (0 if skipped)."""
    if not settings.demo or store.head_position() is not None:
        return 0
    settings = settle(settings, store)  # a new log: the settings' sealing mode, or the default
    ingestor = Ingestor(store, ingest_registry(REGISTRY, settings.sealing, data=settings.data))
    stored = 0
    batch: list[Event] = []
    for item in generate(settings.demo_customers, seed):
        batch.append(REGISTRY.validate(item))
        if len(batch) >= DEMO_BATCH:
            stored += _append(ingestor, batch)
            batch = []
    if batch:
        stored += _append(ingestor, batch)
    return stored


DEMO_BATCH = 10_000


def _append(ingestor: Ingestor, batch: list[Event]) -> int:
    outcomes = ingestor.append(batch)
    return len(outcomes) - outcomes.duplicate_count
