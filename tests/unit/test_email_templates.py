"""Email rendering: every kind in every language, locale formatting, escaping, fallback."""
from __future__ import annotations

import html
import re
import string
import typing
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from babel.numbers import format_currency

from schemas import (Delivery, InvoiceIssued, InvoiceOverdue, Money, OrderCancelled, OrderConfirmed, OrderLine,
                     OrderRefunded, OrderShipped, PaymentDeclined, ReminderDue, StandingOrderOccurrenceFailed)
from schemas.events.notifications import NotificationKind
from services.notifications.messages import MESSAGES
from services.notifications.templates import KIND_OF, LANGUAGES, RenderedEmail, render

LANGS = ["en", "es", "fr", "pl", "vi", "hr"]
T0 = datetime(2025, 3, 1, 23, 30, tzinfo=timezone.utc)
CONF = "SB-7K3M-9QXD"
REASONS = typing.get_args(PaymentDeclined.model_fields["reason_code"].annotation)


def eur(amount: str) -> Money:
    return Money(amount=Decimal(amount), currency="EUR")


def delivery(recipient: str = "Ana Kovač") -> Delivery:
    return Delivery(recipient=recipient, address_lines=["Ilica 1"], city="Zagreb", postal_code="10000",
                    country="HR", phone="+385 1 234 5678", email="ana@example.hr")


def confirmed(recipient: str = "Ana Kovač", **kw) -> OrderConfirmed:
    lines = [OrderLine(sku="WID-1", name="Widget", quantity=1000, unit_price=eur("1.2345")),
             OrderLine(sku="GAD-2", name="Gadget", quantity=2, unit_price=eur("17.25"))]
    return OrderConfirmed(order_id="o-1", customer_id="c-1", confirmation_number=CONF, lines=lines,
                          total=eur("1268.99"), delivery=delivery(recipient), confirmed_at=T0, **kw)


def shipped() -> OrderShipped:
    return OrderShipped(order_id="o-1", customer_id="c-1", carrier="DHL Express", tracking_number="1Z999AA10123",
                        distribution_centre="Zagreb DC", shipped_at=T0)


def declined(reason: str = "credit_limit_exceeded") -> PaymentDeclined:
    return PaymentDeclined(order_id="o-1", customer_id="c-1", method="account", reason_code=reason,
                           message="Declined by the payment service", declined_at=T0)


def cancelled() -> OrderCancelled:
    return OrderCancelled(order_id="o-1", customer_id="c-1", reason="Product WID-1 is inactive", cancelled_at=T0)


def standing_failed() -> StandingOrderOccurrenceFailed:
    return StandingOrderOccurrenceFailed(standing_order_id="so-42", occurrence=7, customer_id="c-1",
                                         reason="Product WID-1 is no longer sold", delivery=delivery(),
                                         failed_at=T0)


def reminder(title: str = "Call about reorder") -> ReminderDue:
    return ReminderDue(task_id="t-1", reminder_id="r-1", customer_id="c-1", customer_name="Acme d.o.o.",
                       salesperson_id="sp-1", salesperson_email="sp@example.com", title=title, due_at=T0)


def invoice() -> InvoiceIssued:
    return InvoiceIssued(invoice_number="INV-2026-000042", customer_id="c-1", order_id="o-1",
                         lines=[OrderLine(sku="WID-1", name="Žarulja łść ạắ", quantity=3, unit_price=eur("12.50"))],
                         tax_total=eur("0.00"), total=eur("37.50"), issue_date="2026-01-15", due_date="2026-02-28",
                         time_zone="Europe/Zagreb", billing_email="ap@example.hr", issued_at=T0)


def overdue() -> InvoiceOverdue:
    return InvoiceOverdue(invoice_number="INV-2026-000042", customer_id="c-1", step_days=14, days_overdue=15,
                          open_amount=eur("37.50"), due_date="2026-02-28", billing_email="ap@example.hr",
                          on_hold=True, noticed_at=T0)


def refunded() -> OrderRefunded:
    return OrderRefunded(order_id="o-1", customer_id="c-1", method="account", amount=eur("37.50"),
                         refund_reference="CN-2026-000007", refunded_at=T0)


# (event factory, extra, identifiers that must appear in both parts; the first also in the subject)
CASES = {
    "order_confirmation": (confirmed, {}, [CONF]),
    "shipping_confirmation": (shipped, {"confirmation_number": CONF}, [CONF, "1Z999AA10123"]),
    "payment_declined": (declined, {}, ["o-1"]),
    "order_cancelled": (cancelled, {"confirmation_number": CONF}, [CONF]),
    "standing_order_failed": (standing_failed, {}, ["so-42", "7"]),
    "reminder": (reminder, {}, ["Call about reorder", "Acme d.o.o."]),
    "invoice": (invoice, {}, ["INV-2026-000042", "WID-1"]),
    "invoice_overdue": (overdue, {}, ["INV-2026-000042"]),
    "order_refunded": (refunded, {"confirmation_number": CONF}, [CONF, "CN-2026-000007"]),
}


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


# --- the string tables ------------------------------------------------------------------

def test_languages_are_the_six_we_translate():
    assert sorted(MESSAGES) == sorted(LANGS) == sorted(LANGUAGES)


@pytest.mark.parametrize("lang", LANGS)
def test_every_language_has_exactly_the_english_keys(lang):
    assert set(MESSAGES[lang]) == set(MESSAGES["en"])


@pytest.mark.parametrize("lang", LANGS)
def test_placeholders_match_english(lang):
    for key, template in MESSAGES["en"].items():
        assert _placeholders(MESSAGES[lang][key]) == _placeholders(template), key


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_strings_are_actually_translated(lang):
    same = [k for k, v in MESSAGES[lang].items() if v == MESSAGES["en"][k] and len(v) > 8]
    assert same == []


def test_every_decline_reason_has_an_explanation_and_a_next_step():
    for reason in REASONS:
        assert f"reason_{reason}" in MESSAGES["en"] and f"next_{reason}" in MESSAGES["en"]


def test_kind_of_covers_every_notification_kind():
    assert sorted(KIND_OF.values()) == sorted(typing.get_args(NotificationKind))
    assert KIND_OF[OrderConfirmed] == "order_confirmation"
    assert set(CASES) == set(KIND_OF.values())


# --- every kind in every language -------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", list(CASES))
def test_each_kind_renders_in_each_language(kind, lang):
    factory, extra, ids = CASES[kind]
    event = factory()
    assert KIND_OF[type(event)] == kind
    email = render(event, lang, extra=extra)
    assert isinstance(email, RenderedEmail)
    assert email.subject and "\n" not in email.subject
    assert ids[0] in email.subject
    for ident in ids:
        assert ident in email.text
        assert html.escape(ident) in email.html
    assert f'<html lang="{lang}">' in email.html
    for part in (email.subject, email.text, email.html):
        assert "{" not in part and "}" not in part, "unfilled placeholder"
    assert MESSAGES[lang]["team"] in email.text


@pytest.mark.parametrize("kind", list(CASES))
def test_subjects_differ_between_languages(kind):
    factory, extra, _ = CASES[kind]
    subjects = {lang: render(factory(), lang, extra=extra).subject for lang in LANGS}
    assert len(set(subjects.values())) == len(LANGS), subjects


def test_spanish_subject_differs_from_english():
    en, es = render(confirmed(), "en"), render(confirmed(), "es")
    assert es.subject != en.subject
    assert es.subject == f"Pedido confirmado – {CONF}"


# --- order confirmation contents --------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_confirmation_lists_every_line_total_and_address(lang):
    event = confirmed()
    email = render(event, lang)
    for line in event.lines:
        for value in (line.name, line.sku):
            assert value in email.text and value in email.html
        for money in (line.unit_price, line.line_total):
            formatted = format_currency(money.amount, money.currency, locale=lang, decimal_quantization=False)
            assert formatted in email.text and formatted in email.html
    total = format_currency(event.total.amount, "EUR", locale=lang)
    assert total in email.text and total in email.html
    for value in ("Ilica 1", "10000 Zagreb", "Ana Kovač"):
        assert value in email.text and value in email.html


def test_french_money_uses_comma_and_non_breaking_spaces():
    text = render(confirmed(), "fr").text
    expected = format_currency(Decimal("1268.99"), "EUR", locale="fr")
    assert expected in text
    assert "," in expected and expected.endswith("\u00a0€")
    assert expected.startswith("1\u202f268,99") or expected.startswith("1\u00a0268,99")
    assert "1268.99" not in text and "1,268.99" not in text


def test_english_and_polish_money():
    assert "€1,268.99" in render(confirmed(), "en").text
    assert "1\u00a0268,99\u00a0€" in render(confirmed(), "pl").text


def test_unit_price_keeps_all_its_digits():
    assert "€1.2345" in render(confirmed(), "en").text  # never rounded to €1.23


def test_standing_order_occurrence_says_catalog_pricing_and_shows_note():
    email = render(confirmed(standing_order_id="so-42", occurrence=3,
                             priced_note="Catalog price on 2025-03-01"), "en")
    assert "delivery 3 of your standing order so-42" in email.text
    assert "priced from our catalog on the occurrence date" in email.text
    assert "Catalog price on 2025-03-01" in email.text and "Catalog price on 2025-03-01" in email.html
    plain = render(confirmed(), "en")
    assert "standing order" not in plain.text and "Pricing note" not in plain.text


# --- other kinds ------------------------------------------------------------------------

def test_shipping_shows_carrier_centre_and_date_in_recipient_zone():
    email = render(shipped(), "en", extra={"confirmation_number": CONF, "time_zone": "Asia/Tokyo"})
    for value in ("DHL Express", "1Z999AA10123", "Zagreb DC", "March 2, 2025", "(Asia/Tokyo)"):
        assert value in email.text and value in email.html
    utc = render(shipped(), "en", extra={"confirmation_number": CONF})
    assert "March 1, 2025" in utc.text and "(UTC)" in utc.text


def test_shipping_without_confirmation_number_uses_order_id():
    email = render(shipped(), "en")
    assert "o-1" in email.subject and "Order reference: o-1" in email.text


def test_bad_time_zone_falls_back_to_utc():
    assert "(UTC)" in render(shipped(), "en", extra={"time_zone": "Mars/Olympus"}).text


@pytest.mark.parametrize("lang", LANGS)
def test_each_decline_reason_explains_itself(lang):
    texts = set()
    for reason in REASONS:
        email = render(declined(reason), lang)
        assert MESSAGES[lang][f"reason_{reason}"] in email.text
        assert MESSAGES[lang][f"next_{reason}"] in email.text
        texts.add(email.text)
    assert len(texts) == len(REASONS)


def test_decline_next_steps_in_english():
    assert "another card" in render(declined("insufficient_funds"), "en").text
    assert "account manager to raise the limit" in render(declined("credit_limit_exceeded"), "en").text


def test_standing_order_failure_says_which_why_and_what_next():
    email = render(standing_failed(), "pl")
    assert "dostawy nr 7" in email.text and "so-42" in email.text
    assert "Product WID-1 is no longer sold" in email.text
    assert MESSAGES["pl"]["sf_next"] in email.text


def test_reminder_subject_is_one_line_and_mentions_due_time():
    email = render(reminder("Call\r\nback"), "en")
    assert email.subject == "Reminder: Call back – Acme d.o.o."
    assert "March 1, 2025" in email.text and "11:30" in email.text


# --- escaping and fallback --------------------------------------------------------------

def test_html_escapes_malicious_recipient_and_product():
    evil = '<script>alert("x")</script> & Co'
    event = confirmed(recipient=evil)
    event = event.model_copy(update={"lines": [OrderLine(sku="WID-1", name="<img src=x onerror=alert(1)>",
                                                         quantity=1, unit_price=eur("1.00"))]})
    email = render(event, "en")
    assert "<script>" not in email.html and "<img" not in email.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in email.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in email.html
    assert evil in email.text  # the plain-text part is not HTML


def test_html_escapes_reminder_title():
    email = render(reminder('<a href="evil">x</a>'), "en")
    assert '<a href="evil">' not in email.html and "&lt;a href=&quot;evil&quot;&gt;" in email.html


@pytest.mark.parametrize("unknown", ["de", "xx", "", "EN-GB"])
def test_unknown_language_falls_back_to_english(unknown):
    email = render(confirmed(), unknown)
    assert email == render(confirmed(), "en")
    assert email.subject == f"Order confirmed – {CONF}"


def test_regional_language_tags_use_the_base_language():
    assert render(confirmed(), "es-MX") == render(confirmed(), "es")
    assert render(confirmed(), "fr_CA") == render(confirmed(), "fr")


def test_language_none_uses_the_events_own_language():
    event = confirmed().model_copy(update={"language": "hr"})
    assert render(event, None) == render(event, "hr")


def test_unsupported_event_raises():
    with pytest.raises(TypeError):
        render(object(), "en")


@pytest.mark.parametrize("lang", LANGS)
def test_the_invoice_pdf_is_made_from_the_same_content_in_every_language(lang):
    from services.notifications.pdf import render_pdf
    from services.notifications.templates import compose
    composed = compose(invoice(), lang)
    assert composed.subject == render(invoice(), lang).subject
    pdf = render_pdf(composed)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    # the document's title is the email's subject (with the invoice number), in the language's own letters
    literal = re.search(rb"/Title \((.*?)\)\n", pdf)
    title = literal.group(1).decode("latin-1") if literal else \
        bytes.fromhex(re.search(rb"/Title <feff([0-9a-f]+)>", pdf).group(1).decode()).decode("utf-16-be")
    assert title == composed.subject and "INV-2026-000042" in title


def test_an_overdue_reminder_says_the_account_is_on_hold_only_when_it_is():
    held = render(overdue(), "en").text
    assert MESSAGES["en"]["od_hold"] in held
    assert MESSAGES["en"]["od_hold"] not in render(overdue().model_copy(update={"on_hold": False}), "en").text
