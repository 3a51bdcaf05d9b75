"""The web pages' catalogues, language choice, formats and redirect guard (pure)."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from services.notifications.messages import MESSAGES as EMAIL
from services.web.i18n import LANGUAGES, Formats, from_accept_language, translate
from services.web.messages import WEB_MESSAGES
from services.web.pages import _safe_next

WEB = Path(__file__).resolve().parents[2] / "services" / "web"
#: keys built in templates from a prefix and a value (status, event type, channel, ...)
DYNAMIC = ("st_", "ev_", "pay_", "so_", "so_do_", "ch_", "kind_", "tl_", "acct_", "saved_")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_has_the_english_keys_with_the_same_placeholders(lang):
    en, other = WEB_MESSAGES["en"], WEB_MESSAGES[lang]
    assert set(other) == set(en)
    for key, text in en.items():
        assert _fields(other[key]) == _fields(text), (lang, key)


def test_every_text_a_page_asks_for_exists_here_or_in_the_email_catalogue():
    used = set()
    for source in [*WEB.glob("templates/*.html"), *WEB.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(["']([a-z_0-9\-]+)["']""", source.read_text()))
    missing = [k for k in used if k not in WEB_MESSAGES["en"] and k not in EMAIL["en"] and k not in DYNAMIC]
    assert not missing


def test_dynamic_keys_cover_every_value_the_services_send():
    en = WEB_MESSAGES["en"]
    for status in ("placed", "payment_verified", "confirmed", "shipped", "declined", "cancelled"):
        assert f"st_{status}" in en
    for event in ("OrderPlaced", "PaymentVerified", "OrderConfirmed", "OrderShipped", "PaymentDeclined",
                  "OrderCancelled"):
        assert f"ev_{event}" in en
    from typing import get_args
    from schemas.events.crm import ContactChannel
    for channel in get_args(ContactChannel):
        assert f"ch_{channel}" in en


@pytest.mark.parametrize("header,expected", [
    ("pl-PL,pl;q=0.9,en;q=0.5", "pl"), ("fr-CA", "fr"), ("de-DE,hr;q=0.8", "hr"), ("vi", "vi"),
    ("de-DE", "en"), ("", "en"), (None, "en"), ("es;q=0.1,fr;q=0.9", "fr"), ("en;q=abc,es", "es")])
def test_the_browser_language_picks_one_of_ours(header, expected):
    assert from_accept_language(header) == expected


def test_shared_labels_come_from_the_email_catalogue():
    assert translate("hr", "label_tracking") == EMAIL["hr"]["label_tracking"]
    assert translate("xx", "nav_shop") == "Shop"


def test_money_and_dates_follow_the_locale_and_time_zone():
    assert Formats("es", "Europe/Madrid").money({"amount": "1234.50", "currency": "EUR"}) == "1.234,50\xa0€"
    assert Formats("pl", "Europe/Warsaw").money({"amount": "1234.50", "currency": "PLN"}) == "1\xa0234,50\xa0zł"
    assert Formats("en", "UTC").money({"amount": "1234.50", "currency": "EUR"}) == "€1,234.50"
    # 23:30 UTC on 31 January is already 1 February in Warsaw and Ho Chi Minh City
    assert Formats("pl", "Europe/Warsaw").when("2026-01-31T23:30:00+00:00") == "1 lut 2026, 00:30:00"
    assert Formats("vi", "Asia/Ho_Chi_Minh").when("2026-01-31T23:30:00+00:00") == "06:30:00 1 thg 2, 2026"
    assert Formats("en", "UTC").when("2026-01-31T23:30:00+00:00").startswith("Jan 31, 2026, 11:30:00")
    assert Formats("en", "Europe/Warsaw").day("2026-02-01") == "February 1, 2026"


@pytest.mark.parametrize("url,expected", [
    ("/orders/1", "/orders/1"), ("//evil.example/x", None), ("https://evil.example/", None),
    ("/\\evil.example", None), ("", None), (None, None), ("orders", None)])
def test_redirects_stay_on_this_site(url, expected):
    assert _safe_next(url) == expected


def test_every_set_aside_listing_has_a_label_in_every_language():
    # the set-aside page shows an unknown listing under its English name: a new listing gets one here
    from runtime.service import load_service
    from runtime.set_aside import RUNTIME_SET_ASIDE
    names = set(RUNTIME_SET_ASIDE)
    for service in (p.parent.name for p in WEB.parent.glob("*/service.py")):
        names |= set(load_service(service).set_aside)
    for lang in LANGUAGES:
        missing = [n for n in names if "aside_" + n.replace(" ", "_") not in WEB_MESSAGES[lang]]
        assert not missing, (lang, missing)
