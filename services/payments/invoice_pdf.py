"""The invoice as a PDF for GET /invoices/{number}.pdf: the same document the invoice email
attaches. Wording and layout come from the pure rendering modules the email uses
(services.notifications.templates.compose and services.notifications.pdf.render_pdf: no I/O
but reading the font, no tables), so a download and the emailed copy cannot drift apart. The
invoice is rebuilt from payments' own rows: the invoice as issued, the account's current
language and time zone."""
from __future__ import annotations

from schemas import InvoiceIssued, Money
from services.notifications.pdf import NoFont, render_pdf
from services.notifications.templates import compose, resolve_language

__all__ = ["NoFont", "render_invoice"]


def invoice_event(row: dict, account: dict) -> InvoiceIssued:
    """The InvoiceIssued the invoice row was issued as (billing email left out: not printed)."""
    money = lambda amount: Money(amount=amount, currency=row["currency"])  # noqa: E731
    return InvoiceIssued(invoice_number=row["invoice_number"], customer_id=row["customer_id"],
                         order_id=row["order_id"], lines=row["lines"], tax_total=money(row["tax_total"]),
                         total=money(row["total"]), issue_date=row["issue_date"], due_date=row["due_date"],
                         time_zone=account["time_zone"], language=account["language"], issued_at=row["issued_at"])


def render_invoice(row: dict, account: dict, language: str | None = None) -> bytes:
    """PDF bytes of the invoice in `language` (None: the account's billing language). NoFont when
    the deployment has no font covering our languages."""
    event = invoice_event(row, account)
    lang = resolve_language(language or event.language)
    return render_pdf(compose(event, lang, extra={"time_zone": event.time_zone}))
