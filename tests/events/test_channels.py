"""Channel rules: every GA4 default channel group, the precedence between them, and how the
(source, medium) pair is derived from utm parameters, click ids and the referrer."""

from __future__ import annotations

import pytest

from events.channels import CHANNELS, RULES, classify, classify_url, host_of

# (case, utm_source, utm_medium, utm_campaign, expected channel): one row per rule at least,
# and rows where a touch matches several rules and the earlier one must win.
UTM_TABLE = [
    ("direct: no source, no medium", None, None, None, "direct"),
    ("direct: explicit (direct)/(none)", "(direct)", "(none)", None, "direct"),
    ("cross-network: campaign name", "google", "cpc", "pmax cross-network spring", "cross_network"),
    ("cross-network beats paid shopping", "amazon", "cpc", "cross-network", "cross_network"),
    ("paid shopping: shopping site, paid medium", "amazon", "cpc", None, "paid_shopping"),
    ("paid shopping: shop campaign, paid medium", "google", "ppc", "summer-shop", "paid_shopping"),
    ("paid shopping beats paid search", "google", "cpc", "shopping feed", "paid_shopping"),
    ("paid search: search site, cpc", "google", "cpc", None, "paid_search"),
    ("paid search: retargeting medium", "bing", "retargeting", None, "paid_search"),
    ("paid search: paid.* medium", "duckduckgo", "paid_search", None, "paid_search"),
    ("paid social: social site, paid medium", "facebook", "paid_social", None, "paid_social"),
    ("paid social: abbreviation", "ig", "cpc", None, "paid_social"),
    ("paid video: video site, paid medium", "youtube", "cpv", None, "paid_video"),
    ("display: display medium", "newsnetwork", "display", None, "display"),
    ("display: cpm is display, not paid other", "somesite", "cpm", None, "display"),
    ("display: banner", "somesite", "banner", None, "display"),
    ("display: interstitial", "somesite", "interstitial", None, "display"),
    ("paid other: paid medium, unknown source", "somesite", "cpc", None, "paid_other"),
    ("paid other beats organic by medium word", "newsletter", "paid-email", None, "paid_other"),
    ("organic shopping: shopping site", "etsy", "referral", None, "organic_shopping"),
    ("organic shopping: shop campaign", "partner", "referral", "summer_shop", "organic_shopping"),
    ("organic shopping: 'shop' after a letter a-d or f-z does not count", "partner", "referral", "bishop",
     "referral"),
    ("organic shopping: 'eshop' counts", "partner", "referral", "eshop", "organic_shopping"),
    ("organic social: social site", "linkedin", "referral", None, "organic_social"),
    ("organic social: social medium", "company-blog", "social-media", None, "organic_social"),
    ("organic social beats organic video", "facebook", "video", None, "organic_social"),
    ("organic video: video site", "vimeo", "referral", None, "organic_video"),
    ("organic video: medium contains video", "partner", "explainer-video", None, "organic_video"),
    ("organic search: search site", "bing", "referral", None, "organic_search"),
    ("organic search: organic medium", "some-engine", "organic", None, "organic_search"),
    ("referral: referral medium", "blog.example.org", "referral", None, "referral"),
    ("referral: app", "partner", "app", None, "referral"),
    ("referral: link", "partner", "link", None, "referral"),
    ("referral beats email", "email", "referral", None, "referral"),
    ("email: medium", "newsletter", "email", None, "email"),
    ("email: source spelled e-mail", "e-mail", "weekly", None, "email"),
    ("email: medium e_mail", "crm", "e_mail", None, "email"),
    ("affiliates", "partner-network", "affiliate", None, "affiliates"),
    ("audio", "spotify-ads", "audio", None, "audio"),
    ("sms: medium", "twilio", "sms", None, "sms"),
    ("sms: source", "sms", "text", None, "sms"),
    ("sms beats mobile push", "sms", "push", None, "sms"),
    ("mobile push: medium ends with push", "app", "web-push", None, "mobile_push_notifications"),
    ("mobile push: medium contains mobile", "app", "mobile-alert", None, "mobile_push_notifications"),
    ("mobile push: medium contains notification", "app", "in-app notification", None,
     "mobile_push_notifications"),
    ("mobile push: firebase", "firebase", "fcm", None, "mobile_push_notifications"),
    ("unassigned: nothing matches", "partner", "print", None, "unassigned"),
    ("unassigned: source without medium", "partner", None, None, "unassigned"),
    ("case does not matter", "Google", "CPC", None, "paid_search"),
]


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "expected"), [row[1:] for row in UTM_TABLE], ids=[row[0] for row in UTM_TABLE]
)
def test_channel_rules__utm_parameters(source, medium, campaign, expected):
    assert classify(utm_source=source, utm_medium=medium, utm_campaign=campaign).channel == expected


def test_channel_rules__the_table_covers_every_rule_of_google_s_list():
    covered = {row[-1] for row in UTM_TABLE}

    assert covered == set(CHANNELS)
    assert [name for name, _ in RULES][:8] == [
        "direct", "cross_network", "paid_shopping", "paid_search", "paid_social", "paid_video", "display",
        "paid_other",
    ]


# (case, landing URL, referrer, expected channel, expected source)
URL_TABLE = [
    ("gclid is a Google search ad", "https://shop.example/?gclid=abc", None, "paid_search", "google"),
    ("gbraid is a Google ad", "https://shop.example/?gbraid=abc", None, "paid_search", "google"),
    ("wbraid is a Google ad", "https://shop.example/?wbraid=abc", None, "paid_search", "google"),
    ("dclid is display (DV360 / Campaign Manager)", "https://shop.example/?dclid=abc", None, "display", "dv360"),
    ("msclkid is a Microsoft search ad", "https://shop.example/?msclkid=abc", None, "paid_search", "bing"),
    ("ttclid is a TikTok ad", "https://shop.example/?ttclid=abc", None, "paid_social", "tiktok"),
    ("li_fat_id is a LinkedIn ad", "https://shop.example/?li_fat_id=abc", None, "paid_social", "linkedin"),
    ("fbclid alone is organic social", "https://shop.example/?fbclid=abc", None, "organic_social", "facebook"),
    ("fbclid with paid utm is paid social", "https://shop.example/?fbclid=a&utm_source=facebook&utm_medium=cpc",
     None, "paid_social", "facebook"),
    ("gclid wins over utm (auto-tagging)", "https://shop.example/?gclid=a&utm_source=news&utm_medium=email", None,
     "paid_search", "google"),
    ("utm wins over the referrer", "https://shop.example/?utm_source=news&utm_medium=email",
     "https://www.google.com/", "email", "news"),
    ("search referrer is organic search", "https://shop.example/", "https://www.google.co.uk/search?q=x",
     "organic_search", "google.co.uk"),
    ("social referrer is organic social", "https://shop.example/", "https://l.facebook.com/", "organic_social",
     "l.facebook.com"),
    ("t.co is social", "https://shop.example/", "https://t.co/xyz", "organic_social", "t.co"),
    ("video referrer is organic video", "https://shop.example/", "https://m.youtube.com/watch?v=1",
     "organic_video", "m.youtube.com"),
    ("shopping referrer is organic shopping", "https://shop.example/", "https://www.amazon.de/dp/1",
     "organic_shopping", "amazon.de"),
    ("other referrer is referral", "https://shop.example/", "https://blog.example.org/post", "referral",
     "blog.example.org"),
    ("own host as referrer is direct", "https://shop.example/cart", "https://shop.example/", "direct", "(direct)"),
    ("no referrer, no parameters is direct", "https://shop.example/", None, "direct", "(direct)"),
]


@pytest.mark.parametrize(
    ("url", "referrer", "channel", "source"), [row[1:] for row in URL_TABLE], ids=[row[0] for row in URL_TABLE]
)
def test_channel_rules__click_ids_and_referrers(url, referrer, channel, source):
    found = classify_url(url, referrer)

    assert (found.channel, found.source) == (channel, source)


def test_channel_rules__a_configured_internal_referrer_is_no_referrer():
    found = classify_url("https://shop.example/", "https://checkout.example-pay.com/done",
                         internal_hosts=["checkout.example-pay.com"])

    assert found.channel == "direct"


def test_channel_rules__campaign_is_utm_campaign_as_given():
    found = classify_url("https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=Spring%20Sale")

    assert (found.channel, found.source, found.medium, found.campaign) == ("email", "news", "email", "Spring Sale")


def test_host_of__drops_www_and_tolerates_junk():
    assert host_of("https://www.Example.com:8080/x") == "example.com"
    assert host_of("example.org/path") == "example.org"
    assert host_of("") is None and host_of("http://[::1") is None
