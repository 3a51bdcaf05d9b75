"""Pure rendering of the notification emails: event + language -> subject, text and HTML.

    email = render(order_confirmed, "fr", extra={"time_zone": "Europe/Paris"})

No I/O: strings come from `messages.py`, money and dates are formatted by babel in
the recipient's locale, and every value that came from outside (names, addresses,
product names, reasons...) is escaped with `html.escape` in the HTML part.

`extra` (all optional):
  confirmation_number  shown in shipping / cancellation emails (else the order id)
  time_zone            IANA zone for dates, e.g. "Europe/Warsaw" (default UTC)
  recipient_name       name for the greeting when the event carries none
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.numbers import format_currency, format_decimal

from schemas.events.crm import ReminderDue
from schemas.events.orders import OrderCancelled, OrderConfirmed, OrderShipped, PaymentDeclined
from schemas.events.payments import InvoiceIssued, InvoiceOverdue, OrderRefunded
from schemas.events.scheduling import StandingOrderOccurrenceFailed
from schemas.types import Delivery, Money
from services.notifications.messages import DEFAULT_LANGUAGE, MESSAGES

KIND_OF: dict[type, str] = {
    OrderConfirmed: "order_confirmation",
    OrderShipped: "shipping_confirmation",
    PaymentDeclined: "payment_declined",
    OrderCancelled: "order_cancelled",
    StandingOrderOccurrenceFailed: "standing_order_failed",
    ReminderDue: "reminder",
    InvoiceIssued: "invoice",
    InvoiceOverdue: "invoice_overdue",
    OrderRefunded: "order_refunded",
}
LANGUAGES: tuple[str, ...] = tuple(MESSAGES)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str   # plain-text part
    html: str   # HTML part


def resolve_language(language: str | None) -> str:
    """'es', 'es-MX' or 'es_MX' -> 'es'; anything we do not translate -> English."""
    code = (language or "").replace("_", "-").split("-")[0].strip().lower()
    return code if code in MESSAGES else DEFAULT_LANGUAGE


def _zone(value: Any) -> tuple[tzinfo, str]:
    if isinstance(value, tzinfo):
        return value, str(value)
    if isinstance(value, str) and value:
        try:
            return ZoneInfo(value), value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.utc, "UTC"


class _Fmt:
    """Strings, money and dates in one language and time zone."""

    def __init__(self, lang: str, time_zone: Any):
        self.lang = lang
        self.msgs = MESSAGES[lang]
        self.tz, self.tz_name = _zone(time_zone)

    def t(self, key: str, **values: Any) -> str:
        return self.msgs[key].format(**values) if values else self.msgs[key]

    def money(self, m: Money) -> str:
        # never round silently: a unit price of 1.2345 shows all its digits
        return format_currency(m.amount, m.currency, locale=self.lang, decimal_quantization=False)

    def number(self, n: int) -> str:
        return format_decimal(n, locale=self.lang)

    def when(self, dt: datetime) -> str:
        local = dt.astimezone(self.tz)
        pattern = get_datetime_format("medium", locale=self.lang).replace("'", "")
        text = pattern.replace("{1}", format_date(local, "long", locale=self.lang)).replace(
            "{0}", format_time(local, "short", tzinfo=self.tz, locale=self.lang))
        return f"{text} ({self.tz_name})"

    def day(self, dt: datetime) -> str:
        return format_date(dt.astimezone(self.tz), "long", locale=self.lang)

    def calendar_day(self, d: date) -> str:
        """A calendar date as it is (an invoice's local date: no zone to convert)."""
        return format_date(d, "long", locale=self.lang)

    def address(self, d: Delivery) -> list[str]:
        country = Locale.parse(self.lang).territories.get(d.country, d.country)
        return [d.recipient, *d.address_lines, f"{d.postal_code} {d.city}", country, d.phone]


# Content blocks, rendered twice (text and HTML):
#   ("p", text) | ("fields", [(label, value)]) | ("section", heading, text)
#   ("table", headers, rows, (total_label, total)) | ("address", label, lines)
Block = tuple
Built = tuple[str, str | None, list[Block]]   # subject, greeting name, blocks


def _order_confirmation(e: OrderConfirmed, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    headers = tuple(f.t(k) for k in ("col_product", "col_sku", "col_quantity", "col_unit_price", "col_line_total"))
    rows = [(ln.name, ln.sku, f.number(ln.quantity), f.money(ln.unit_price), f.money(ln.line_total))
            for ln in e.lines]
    blocks: list[Block] = [
        ("p", f.t("oc_intro")),
        ("fields", [(f.t("label_confirmation"), e.confirmation_number)]),
        ("table", headers, rows, (f.t("label_total"), f.money(e.total))),
    ]
    if e.standing_order_id is not None and e.occurrence is not None:
        blocks.append(("p", f.t("oc_standing", occurrence=e.occurrence, standing_order=e.standing_order_id)))
    if e.priced_note:
        blocks.append(("fields", [(f.t("label_priced_note"), e.priced_note)]))
    blocks += [("address", f.t("label_delivery"), f.address(e.delivery)), ("p", f.t("oc_outro"))]
    return f.t("oc_subject", number=e.confirmation_number), e.delivery.recipient, blocks


def _shipping(e: OrderShipped, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    number = extra.get("confirmation_number")
    ref = (f.t("label_confirmation"), number) if number else (f.t("label_order"), e.order_id)
    blocks: list[Block] = [
        ("p", f.t("sc_intro", number=ref[1])),
        ("fields", [ref, (f.t("label_carrier"), e.carrier), (f.t("label_tracking"), e.tracking_number),
                    (f.t("label_dc"), e.distribution_centre), (f.t("label_shipped_at"), f.when(e.shipped_at))]),
        ("p", f.t("sc_outro")),
    ]
    return f.t("sc_subject", number=ref[1]), None, blocks


def _payment_declined(e: PaymentDeclined, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    blocks: list[Block] = [
        ("p", f.t("pd_intro", order=e.order_id)),
        ("section", f.t("label_what_happened"), f.t(f"reason_{e.reason_code}")),
        ("section", f.t("label_next"), f.t(f"next_{e.reason_code}")),
    ]
    if e.message:
        blocks.append(("fields", [(f.t("label_details"), e.message)]))
    return f.t("pd_subject", order=e.order_id), None, blocks


def _order_cancelled(e: OrderCancelled, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    ref = extra.get("confirmation_number") or e.order_id
    blocks: list[Block] = [
        ("p", f.t("ca_intro", order=ref)),
        ("fields", [(f.t("label_reason"), e.reason), (f.t("label_cancelled_at"), f.when(e.cancelled_at))]),
        ("p", f.t("ca_outro")),
    ]
    return f.t("ca_subject", order=ref), None, blocks


def _standing_failed(e: StandingOrderOccurrenceFailed, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    ids = {"standing_order": e.standing_order_id, "occurrence": e.occurrence}
    blocks: list[Block] = [
        ("p", f.t("sf_intro", date=f.day(e.failed_at), **ids)),
        ("section", f.t("label_reason"), e.reason),
        ("section", f.t("label_next"), f.t("sf_next")),
        ("address", f.t("label_delivery"), f.address(e.delivery)),
    ]
    return f.t("sf_subject", **ids), e.delivery.recipient, blocks


def _reminder(e: ReminderDue, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    due = f.when(e.due_at)
    blocks: list[Block] = [
        ("p", f.t("rm_intro", customer=e.customer_name, due=due)),
        ("fields", [(f.t("label_task"), e.title), (f.t("label_customer"), e.customer_name),
                    (f.t("label_due"), due)]),
        ("p", f.t("rm_outro")),
    ]
    return f.t("rm_subject", title=e.title, customer=e.customer_name), None, blocks


def _invoice(e: InvoiceIssued, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    headers = tuple(f.t(k) for k in ("col_product", "col_sku", "col_quantity", "col_unit_price", "col_line_total"))
    rows = [(ln.name, ln.sku, f.number(ln.quantity), f.money(ln.unit_price), f.money(ln.line_total))
            for ln in e.lines]
    blocks: list[Block] = [
        ("p", f.t("inv_intro", number=e.invoice_number, order=e.order_id)),
        ("fields", [(f.t("label_invoice"), e.invoice_number), (f.t("label_order"), e.order_id),
                    (f.t("label_issue_date"), f.calendar_day(e.issue_date)),
                    (f.t("label_due_date"), f.calendar_day(e.due_date))]),
        ("table", headers, rows, (f.t("label_amount_due"), f.money(e.total))),
        ("fields", [(f.t("label_tax"), f.money(e.tax_total))]),
        ("p", f.t("inv_outro")),
    ]
    return f.t("inv_subject", number=e.invoice_number), None, blocks


def _invoice_overdue(e: InvoiceOverdue, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    blocks: list[Block] = [
        ("p", f.t("od_intro", number=e.invoice_number, due=f.calendar_day(e.due_date),
                  days=f.number(e.days_overdue))),
        ("fields", [(f.t("label_invoice"), e.invoice_number), (f.t("label_due_date"), f.calendar_day(e.due_date)),
                    (f.t("label_days_overdue"), f.number(e.days_overdue)),
                    (f.t("label_open_amount"), f.money(e.open_amount))]),
    ]
    if e.on_hold:
        blocks.append(("p", f.t("od_hold")))
    blocks.append(("p", f.t("od_outro")))
    return f.t("od_subject", number=e.invoice_number), None, blocks


def _order_refunded(e: OrderRefunded, f: _Fmt, extra: Mapping[str, Any]) -> Built:
    ref = extra.get("confirmation_number") or e.order_id
    intro = "rf_intro_card" if e.method == "card" else "rf_intro_account"
    blocks: list[Block] = [
        ("p", f.t(intro, amount=f.money(e.amount), order=ref, reference=e.refund_reference)),
        ("fields", [(f.t("label_refund_amount"), f.money(e.amount)), (f.t("label_refund"), e.refund_reference)]),
    ]
    return f.t("rf_subject", order=ref), None, blocks


_BUILDERS: dict[str, Callable[[Any, _Fmt, Mapping[str, Any]], Built]] = {
    "order_confirmation": _order_confirmation,
    "shipping_confirmation": _shipping,
    "payment_declined": _payment_declined,
    "order_cancelled": _order_cancelled,
    "standing_order_failed": _standing_failed,
    "reminder": _reminder,
    "invoice": _invoice,
    "invoice_overdue": _invoice_overdue,
    "order_refunded": _order_refunded,
}


def kind_of(event: Any) -> str:
    for cls in type(event).__mro__:
        if cls in KIND_OF:
            return KIND_OF[cls]
    raise TypeError(f"no email template for {type(event).__name__}")


@dataclass(frozen=True)
class Composed:
    """What an email says, before it is laid out as text, HTML (or a PDF: pdf.py)."""
    lang: str
    subject: str
    greeting: str
    blocks: list[Block]
    closing: tuple[str, str]


def compose(event: Any, language: str | None = None, extra: Mapping[str, Any] | None = None) -> Composed:
    extra = extra or {}
    lang = resolve_language(language if language is not None else getattr(event, "language", None))
    f = _Fmt(lang, extra.get("time_zone"))
    subject, name, blocks = _BUILDERS[kind_of(event)](event, f, extra)
    name = name or extra.get("recipient_name")
    greeting = f.t("greeting", name=name) if name else f.t("greeting_generic")
    subject = " ".join(subject.split())   # one header line, whatever the values held
    return Composed(lang, subject, greeting, blocks, (f.t("sign_off"), f.t("team")))


def render(event: Any, language: str | None = None, extra: Mapping[str, Any] | None = None) -> RenderedEmail:
    """The email for `event` in `language` (None: the event's own language; unknown: English)."""
    c = compose(event, language, extra)
    f = _Fmt(c.lang, None)
    return RenderedEmail(subject=c.subject, text=_to_text(f, c.greeting, c.blocks, c.closing),
                         html=_to_html(c.lang, c.subject, c.greeting, c.blocks, c.closing))


def _to_text(f: _Fmt, greeting: str, blocks: list[Block], closing: tuple[str, str]) -> str:
    colon = f.t("colon")
    parts = [greeting]
    for block in blocks:
        kind = block[0]
        if kind == "p":
            parts.append(block[1])
        elif kind == "fields":
            parts.append("\n".join(f"{label}{colon}{value}" for label, value in block[1]))
        elif kind == "section":
            parts.append(f"{block[1]}{colon.rstrip()}\n{block[2]}")
        elif kind == "table":
            headers, rows, (total_label, total) = block[1], block[2], block[3]
            lines = ["- " + row[0] + "".join(f" | {h}{colon}{v}" for h, v in zip(headers[1:], row[1:]))
                     for row in rows]
            parts.append("\n".join(lines) + f"\n{total_label}{colon}{total}")
        elif kind == "address":
            parts.append(f"{block[1]}{colon.rstrip()}\n" + "\n".join(block[2]))
    parts.append("\n".join(closing))
    return "\n\n".join(parts) + "\n"


def _e(value: Any) -> str:
    return _html.escape(str(value), quote=True).replace("\n", "<br>\n")


_CELL = ' style="padding:4px 8px;border-bottom:1px solid #ddd;text-align:{}"'


def _to_html(lang: str, subject: str, greeting: str, blocks: list[Block], closing: tuple[str, str]) -> str:
    out = [f'<!DOCTYPE html>\n<html lang="{_e(lang)}">\n<head><meta charset="utf-8"><title>{_e(subject)}</title></head>',
           '<body style="font-family:Arial,Helvetica,sans-serif;color:#222;line-height:1.4">',
           f"<p>{_e(greeting)}</p>"]
    for block in blocks:
        kind = block[0]
        if kind == "p":
            out.append(f"<p>{_e(block[1])}</p>")
        elif kind == "fields":
            rows = "".join(f"<tr><th{_CELL.format('left')}>{_e(label)}</th><td{_CELL.format('left')}>{_e(value)}</td></tr>"
                           for label, value in block[1])
            out.append(f'<table role="presentation" style="border-collapse:collapse">{rows}</table>')
        elif kind == "section":
            out.append(f"<h3>{_e(block[1])}</h3>\n<p>{_e(block[2])}</p>")
        elif kind == "table":
            headers, rows, (total_label, total) = block[1], block[2], block[3]
            align = ["left", "left", "right", "right", "right"]
            head = "".join(f"<th{_CELL.format(a)}>{_e(h)}</th>" for h, a in zip(headers, align))
            body = "".join("<tr>" + "".join(f"<td{_CELL.format(a)}>{_e(v)}</td>" for v, a in zip(row, align)) + "</tr>"
                           for row in rows)
            foot = (f'<tr><th colspan="{len(headers) - 1}"{_CELL.format("right")}>{_e(total_label)}</th>'
                    f"<th{_CELL.format('right')}>{_e(total)}</th></tr>")
            out.append(f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
                       f"<tbody>{body}</tbody><tfoot>{foot}</tfoot></table>")
        elif kind == "address":
            out.append(f"<p><strong>{_e(block[1])}</strong><br>\n" + "<br>\n".join(_e(x) for x in block[2]) + "</p>")
    out.append(f"<p>{_e(closing[0])}<br>\n{_e(closing[1])}</p>\n</body>\n</html>\n")
    return "\n".join(out)
