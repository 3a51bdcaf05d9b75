"""Supplier accounts and their money, owned by payments: invoices, payments received, credit
notes and refunds."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from schemas.envelope import Event
from schemas.types import (COUNT_BOUNDS, BookAmount, BookMoney, Currency, Day, Email, Id, Language, OrderLine,
                           TimeZoneName, UtcDateTime, integral, line, text, whole)

#: an invoice or credit note number: series, year and a gap-free sequence, e.g. INV-2026-000042
DocumentNumber = line(40, 1)


class SupplierAccountChanged(Event):
    """A customer's supplier account was opened, its terms changed, or its balance moved (an
    invoice, a payment received, a credit note) or it was put on or released from hold. Emitted in
    the same transaction as the change, with the account as it then stands: a consumer keeps the
    one with the highest `version` (not the latest `changed_at`: replicas' clocks differ)."""
    key_field = "customer_id"
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    credit_limit: BookAmount = Field(description="most the customer may owe at once, in the account's currency")
    open_balance: BookAmount = Field(description="what the customer owes now on open invoices, in the account's "
                                                 "currency")
    currency: Currency
    payment_terms_days: whole(0, 365) = Field(description="net terms, e.g. 30 for net 30")
    status: Literal["active", "suspended"] = Field(description="active accounts can be charged, suspended ones cannot")
    changed_at: UtcDateTime
    unapplied_credit: BookAmount | None = Field(
        default=None, description="money received or credited and not yet applied to an invoice (an overpayment)")
    available_credit: BookAmount | None = Field(
        default=None, description="what the customer may still charge: credit limit - open balance + unapplied "
                                  "credit, 0 when over")
    on_hold: bool | None = Field(default=None, description="true while an overdue account is on hold: new account "
                                                           "orders are declined (account_on_hold)")
    change: Literal["opened", "terms", "invoice", "payment", "credit_note", "hold", "release"] | None = Field(
        default=None, description="what moved the account")
    version: int | None = Field(
        default=None, **COUNT_BOUNDS,
        description="the account's announcement counter: 1 when opened, one more at every change; a consumer "
                    "keeps the highest it has seen, so a redelivered or reordered older one never rolls it back "
                    "(absent on events from before it existed: order those by changed_at)")

    _integral = field_validator("version", mode="before")(integral)


class InvoiceIssued(Event):
    """An on-account charge was invoiced: one invoice per charged order, numbered gap-free per year."""
    key_field = "customer_id"
    invoice_number: DocumentNumber = Field(description="gap-free per year, e.g. INV-2026-000042")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    order_id: Id = Field(description="the order charged")
    lines: list[OrderLine] = Field(min_length=1, max_length=200, description="the order's lines, as placed")
    tax_total: BookMoney = Field(description="taxes as the order gave them (its prices are taken as final)")
    total: BookMoney = Field(description="what the invoice asks for: the order total")
    issue_date: Day = Field(description="in the account's time zone")
    due_date: Day = Field(description="from the account's payment terms")
    time_zone: TimeZoneName = Field(description="the account's IANA time zone")
    billing_email: Email | None = Field(default=None, description="where the invoice is emailed, if the account has one")
    language: Language = Field(default="en", description="the billing contact's language")
    issued_at: UtcDateTime


class PaymentReceived(Event):
    """A customer's payment arrived (published by a bank or ERP feed, upstream): payments allocates
    it to the customer's open invoices. The payer's reference is unique: the same payment
    published again (any event id) is recorded once."""
    key_field = "customer_id"
    payer_reference: Id = Field(description="the payer's (bank's) reference for this payment; idempotency key")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    amount: BookMoney = Field(description="the amount received, in the account's currency")
    received_on: Day = Field(description="value date of the payment")
    invoice_numbers: list[DocumentNumber] = Field(
        default_factory=list, max_length=100,
        description="invoices the payer named; empty: oldest open invoices first")
    note: text(500) | None = Field(default=None, description="remittance text, as received")


class CreditNoteIssued(Event):
    """A credit note lowered a customer's account (a cancelled account order)."""
    key_field = "customer_id"
    credit_note_number: DocumentNumber = Field(description="gap-free per year, e.g. CN-2026-000007")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    order_id: Id = Field(description="the order credited")
    invoice_number: DocumentNumber | None = Field(default=None, description="the invoice it credits")
    amount: BookMoney = Field(description="credited; never more than the invoice")
    reason: text(2000) = Field(description="why, e.g. the order's cancellation reason")
    issue_date: Day = Field(description="in the account's time zone")
    issued_at: UtcDateTime


class OrderRefunded(Event):
    """A cancelled paid order was refunded, once: to the card through the gateway, or on account
    by a credit note."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    method: Literal["card", "account"] = Field(description="card: to the card charged; account: a credit note")
    amount: BookMoney = Field(description="refunded; never more than was charged")
    refund_reference: Id = Field(description="the gateway's refund id, or the credit note number")
    refunded_at: UtcDateTime


class InvoiceOverdue(Event):
    """An invoice reached a reminder step (days past due): one event per invoice and step."""
    key_field = "customer_id"
    invoice_number: DocumentNumber = Field(description="the overdue invoice")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    step_days: whole(1, 3650) = Field(description="the reminder step reached, in days overdue")
    days_overdue: whole(1, 100000) = Field(description="days past the due date, in the customer's time zone")
    open_amount: BookMoney = Field(description="still owed on the invoice")
    due_date: Day = Field(description="when it was due")
    billing_email: Email | None = Field(default=None, description="where the reminder is emailed, if anywhere")
    language: Language = Field(default="en", description="the billing contact's language")
    on_hold: bool = Field(default=False, description="the account is on hold because of overdue invoices")
    noticed_at: UtcDateTime = Field(description="when the overdue check saw it")
