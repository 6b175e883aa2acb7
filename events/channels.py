"""Channel rules: where a touch came from, by GA4's default channel groups.

``classify`` turns what a landing page knows (the utm parameters, click ids, the referrer)
into a ``Classification``: ``channel`` (the group, snake_case), ``source`` (the utm source,
the ad platform of a click id, or the referrer's host) and ``campaign`` (utm_campaign).
A pure function of its arguments: no clock, no I/O.

First the (source, medium) pair is derived, as GA4 derives it:

1. a paid click id (``CLICK_IDS``) gives its platform and medium ``cpc`` (``cpm`` for
   ``dclid``): the ad platform's auto-tagging wins over utm_source/utm_medium, GA4's
   default;
2. else utm_source / utm_medium, when either is given;
3. else ``fbclid`` gives ``facebook`` / ``referral``: Meta adds it to every outbound link,
   paid or not, so it means "came from Facebook", not "an ad";
4. else the referrer's host, with medium ``organic`` for a search site and ``referral``
   otherwise; a referrer on an internal host (``internal_hosts``, and the page's own host)
   is no referrer;
5. else ``(direct)`` / ``(none)``.

Then ``RULES`` are tried in order, the first that matches names the channel, as in
Google's "[GA4] Default channel group" (support.google.com/analytics/answer/9756891);
none matching is ``unassigned``. The site lists (``SEARCH_SITES``...) were written for
this module from Google's published source categories, not copied: a source matches a
list when it is one of its names, or a host one of whose labels (but the last) is one
of its brand names, or which is or ends in one of its domains.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

DIRECT_SOURCE = "(direct)"
NO_MEDIUM = "(none)"

# click id -> (source, medium). Google's gbraid/wbraid are its iOS app and web-to-app ids.
CLICK_IDS: Mapping[str, tuple[str, str]] = {
    "gclid": ("google", "cpc"),
    "gbraid": ("google", "cpc"),
    "wbraid": ("google", "cpc"),
    "dclid": ("dv360", "cpm"),
    "msclkid": ("bing", "cpc"),
    "yclid": ("yandex", "cpc"),
    "ttclid": ("tiktok", "cpc"),
    "li_fat_id": ("linkedin", "cpc"),
    "twclid": ("twitter", "cpc"),
    "sccid": ("snapchat", "cpc"),
    "epik": ("pinterest", "cpc"),
}
ORGANIC_CLICK_IDS: Mapping[str, tuple[str, str]] = {"fbclid": ("facebook", "referral")}


@dataclass(frozen=True)
class SiteList:
    """Sites of one source category: exact ``names`` (utm_source values and hosts),
    ``brands`` matched as a label of a host, ``domains`` matched as a host's suffix."""

    names: frozenset[str]
    brands: frozenset[str]
    domains: tuple[str, ...]

    def matches(self, source: str) -> bool:
        if source in self.names or source in self.brands:
            return True
        if "." not in source:
            return False
        if any(source == domain or source.endswith("." + domain) for domain in self.domains):
            return True
        return any(label in self.brands for label in source.split(".")[:-1])


def _sites(names: str = "", brands: str = "", domains: str = "") -> SiteList:
    """``names`` are separated by commas (a utm_source may hold a space), the others by spaces."""
    return SiteList(
        frozenset(name.strip() for name in names.split(",") if name.strip()),
        frozenset(brands.split()),
        tuple(domains.split()),
    )


SEARCH_SITES = _sites(
    brands="google bing yahoo baidu yandex duckduckgo ecosia qwant startpage naver daum seznam sogou ask aol "
    "dogpile lycos mojeek",
    domains="search.brave.com search.aol.com search.yahoo.com kagi.com perplexity.ai",
)
SOCIAL_SITES = _sites(
    names="fb, ig",
    brands="facebook instagram linkedin twitter pinterest reddit tiktok snapchat tumblr quora vk weibo "
    "whatsapp messenger discord mastodon telegram wechat xing meetup",
    domains="x.com t.co lnkd.in fb.com fb.me news.ycombinator.com threads.net bsky.app ok.ru line.me",
)
VIDEO_SITES = _sites(
    names="yt",
    brands="youtube vimeo twitch dailymotion wistia ted bilibili rumble",
    domains="youtu.be",
)
SHOPPING_SITES = _sites(
    names="google shopping, igshopping",
    brands="amazon ebay etsy walmart aliexpress alibaba rakuten zalando mercadolibre shopify target bestbuy "
    "shopee lazada allegro",
    domains="shopping.google.com shopping.yahoo.com",
)

PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
SHOP_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
EMAIL_WORDS = frozenset({"email", "e-mail", "e_mail", "e mail"})
SOCIAL_MEDIUMS = frozenset({"social", "social-network", "social-media", "sm", "social network", "social media"})
DISPLAY_MEDIUMS = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
REFERRAL_MEDIUMS = frozenset({"referral", "app", "link"})


@dataclass(frozen=True)
class Traffic:
    """The lower-cased (source, medium, campaign) a rule looks at."""

    source: str
    medium: str
    campaign: str


def _paid(t: Traffic) -> bool:
    return bool(PAID_MEDIUM.match(t.medium))


def _shopping(t: Traffic) -> bool:
    return SHOPPING_SITES.matches(t.source) or bool(SHOP_CAMPAIGN.match(t.campaign))


def _push(t: Traffic) -> bool:
    return t.medium.endswith("push") or "mobile" in t.medium or "notification" in t.medium or t.source == "firebase"


# Google's evaluation order: the first rule that matches names the channel.
RULES: tuple[tuple[str, Callable[[Traffic], bool]], ...] = (
    ("direct", lambda t: t.source == DIRECT_SOURCE and t.medium in ("(not set)", NO_MEDIUM)),
    ("cross_network", lambda t: "cross-network" in t.campaign),
    ("paid_shopping", lambda t: _shopping(t) and _paid(t)),
    ("paid_search", lambda t: SEARCH_SITES.matches(t.source) and _paid(t)),
    ("paid_social", lambda t: SOCIAL_SITES.matches(t.source) and _paid(t)),
    ("paid_video", lambda t: VIDEO_SITES.matches(t.source) and _paid(t)),
    ("display", lambda t: t.medium in DISPLAY_MEDIUMS),
    ("paid_other", _paid),
    ("organic_shopping", _shopping),
    ("organic_social", lambda t: SOCIAL_SITES.matches(t.source) or t.medium in SOCIAL_MEDIUMS),
    ("organic_video", lambda t: VIDEO_SITES.matches(t.source) or "video" in t.medium),
    ("organic_search", lambda t: SEARCH_SITES.matches(t.source) or t.medium == "organic"),
    ("referral", lambda t: t.medium in REFERRAL_MEDIUMS),
    ("email", lambda t: t.source in EMAIL_WORDS or t.medium in EMAIL_WORDS),
    ("affiliates", lambda t: t.medium == "affiliate"),
    ("audio", lambda t: t.medium == "audio"),
    ("sms", lambda t: t.source == "sms" or t.medium == "sms"),
    ("mobile_push_notifications", _push),
)
UNASSIGNED = "unassigned"
CHANNELS: tuple[str, ...] = (*(name for name, _ in RULES), UNASSIGNED)


@dataclass(frozen=True)
class Classification:
    channel: str
    source: str
    medium: str
    campaign: str | None


def classify(
    *,
    utm_source: str | None = None,
    utm_medium: str | None = None,
    utm_campaign: str | None = None,
    click_ids: Collection[str] = (),
    referrer: str | None = None,
    page_url: str | None = None,
    internal_hosts: Collection[str] = (),
) -> Classification:
    """The channel, source and campaign of a touch (see the module docstring for the order)."""
    source, medium = _source_and_medium(utm_source, utm_medium, click_ids, referrer, page_url, internal_hosts)
    campaign = utm_campaign.strip() if utm_campaign and utm_campaign.strip() else None
    return Classification(channel_of(source.lower(), medium.lower(), (campaign or "").lower()), source, medium,
                          campaign)


@lru_cache(maxsize=8192)
def channel_of(source: str, medium: str, campaign: str) -> str:
    """The first rule matching lower-cased (source, medium, campaign); cached, as a site's
    touches repeat a few combinations."""
    traffic = Traffic(source, medium, campaign)
    return next((name for name, rule in RULES if rule(traffic)), UNASSIGNED)


def classify_url(
    page_url: str | None, referrer: str | None = None, *, internal_hosts: Collection[str] = ()
) -> Classification:
    """``classify`` with the utm parameters and click ids read from a landing page's URL."""
    query = landing_parameters(page_url)
    return classify(
        utm_source=query.get("utm_source"), utm_medium=query.get("utm_medium"),
        utm_campaign=query.get("utm_campaign"), click_ids=[name for name in query if name in _ALL_CLICK_IDS],
        referrer=referrer, page_url=page_url, internal_hosts=internal_hosts,
    )


_ALL_CLICK_IDS = frozenset({*CLICK_IDS, *ORGANIC_CLICK_IDS})


def landing_parameters(url: str | None) -> dict[str, str]:
    """The query parameters of ``url``, names lower-cased, first value of each, blanks left out."""
    if not url:
        return {}
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
        parameters.setdefault(name.lower(), value)
    return parameters


def host_of(url: str | None) -> str | None:
    """The lower-cased host of a URL without a leading ``www.``; None if it has none."""
    if not url:
        return None
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def _source_and_medium(
    utm_source: str | None,
    utm_medium: str | None,
    click_ids: Collection[str],
    referrer: str | None,
    page_url: str | None,
    internal_hosts: Collection[str],
) -> tuple[str, str]:
    ids = {name.lower() for name in click_ids}
    paid = next((CLICK_IDS[name] for name in CLICK_IDS if name in ids), None)
    if paid is not None:
        return paid
    source = (utm_source or "").strip()
    medium = (utm_medium or "").strip()
    if source or medium:
        return source or "(not set)", medium or "(not set)"
    organic = next((ORGANIC_CLICK_IDS[name] for name in ORGANIC_CLICK_IDS if name in ids), None)
    if organic is not None:
        return organic
    host = host_of(referrer)
    internal = {name.lower().removeprefix("www.") for name in internal_hosts}
    own = host_of(page_url)
    if host and host not in internal and host != own:
        return host, "organic" if SEARCH_SITES.matches(host) else "referral"
    return DIRECT_SOURCE, NO_MEDIUM
