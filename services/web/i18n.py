"""Language and formatting for the pages: the person's language (profile, then their choice, then
Accept-Language), money and dates by babel in their locale and time zone. Texts shared with the
emails (labels of orders, shipments, tasks) come from the emails' catalogue."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import Locale, negotiate_locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency

from services.notifications.messages import MESSAGES as EMAIL_MESSAGES
from services.web.messages import WEB_MESSAGES

LANGUAGES = ("en", "es", "pl", "fr", "vi", "hr")
NATIVE_NAMES = {"en": "English", "es": "Español", "pl": "Polski", "fr": "Français", "vi": "Tiếng Việt",
                "hr": "Hrvatski"}


def translate(lang: str, key: str, **values) -> str:
    lang = lang if lang in LANGUAGES else "en"
    text = WEB_MESSAGES[lang].get(key) or EMAIL_MESSAGES[lang].get(key) or WEB_MESSAGES["en"].get(key) or key
    return text.format(**values) if values else text


def from_accept_language(header: str | None) -> str:
    wanted = []
    for part in (header or "").split(",")[:20]:
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag:
            wanted.append((weight, tag.strip().replace("-", "_")))
    tags = [t for _, t in sorted(wanted, key=lambda w: -w[0])]
    return negotiate_locale(tags + [t.split("_")[0] for t in tags], list(LANGUAGES)) or "en"


def zone(name: str | None):
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


class Formats:
    """What templates call: t(), money(), when(), day(), country()."""

    def __init__(self, lang: str, time_zone: str | None):
        self.lang = lang
        self.tz_name = time_zone or "UTC"
        self.tz = zone(time_zone)

    def t(self, key: str, **values) -> str:
        return translate(self.lang, key, **values)

    def money(self, value) -> str:
        if not value:
            return ""
        return format_currency(Decimal(str(value["amount"])), value["currency"], locale=self.lang)

    def amount(self, amount, currency: str) -> str:
        return format_currency(Decimal(str(amount)), currency, locale=self.lang)

    def when(self, value) -> str:
        if not value:
            return ""
        dt = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(dt.astimezone(self.tz), "medium", tzinfo=self.tz, locale=self.lang)

    def day(self, value) -> str:
        if not value:
            return ""
        d = date.fromisoformat(value[:10]) if isinstance(value, str) else value
        return format_date(d, "long", locale=self.lang)

    def country(self, code: str) -> str:
        return Locale.parse(self.lang).territories.get(code, code)
