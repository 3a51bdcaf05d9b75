"""The pure money arithmetic of supplier accounts (services/payments/books.py): payment terms,
allocation, ageing, statements, reminder steps, local mornings, and a property test that any
sequence of charges, payments, credit notes and card refunds keeps the books balanced."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from schemas.types import Money
from services.payments.books import (ZERO, Allocation, Credit, OpenInvoice, StatementLine, ageing, statement_period, allocate, bucket,
                                     card_charge_journal, card_refund_journal, credit_note_journal, due_on,
                                     invoice_journal, parse_steps, payment_journal, refundable, reminder_steps_due,
                                     statement_totals)
from services.payments.ledger import SupplierAccount, decide_account_charge, receivable
from services.payments.overdue import next_local_morning


def d(s: str) -> Decimal:
    return Decimal(s)


def inv(number: str, issued: str, open_amount: str, due: str | None = None) -> OpenInvoice:
    return OpenInvoice(number, date.fromisoformat(issued), date.fromisoformat(due or issued), d(open_amount))


# --- terms ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("issued,days,kind,due", [
    ("2026-01-15", 30, "net", "2026-02-14"),
    ("2026-01-15", 0, "net", "2026-01-15"),
    ("2026-01-15", 30, "eom", "2026-02-28"),         # 15 Jan + 30 = 14 Feb -> end of February
    ("2028-01-15", 30, "eom", "2028-02-29"),         # leap year
    ("2026-01-15", 30, "eom_net", "2026-03-02"),     # end of January + 30
    ("2026-01-31", 0, "eom_net", "2026-01-31"),
    ("2026-12-20", 30, "net", "2027-01-19"),         # across the year end
    ("2026-12-20", 15, "eom", "2027-01-31"),
])
def test_due_dates_follow_the_terms(issued, days, kind, due):
    assert due_on(date.fromisoformat(issued), days, kind) == date.fromisoformat(due)


def test_negative_terms_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError):
        due_on(date(2026, 1, 1), -1)
    with pytest.raises(ValueError):
        due_on(date(2026, 1, 1), 30, "weekly")


# --- allocation -------------------------------------------------------------------------------------------

def test_payment_goes_to_the_oldest_invoice_first_and_an_underpayment_leaves_a_remainder():
    got = allocate([inv("INV-2026-000002", "2026-02-01", "50.00"), inv("INV-2026-000001", "2026-01-01", "30.00")],
                   [Credit("payment", "p1", d("40.00"))])
    assert got == [Allocation("INV-2026-000001", "payment", "p1", d("30.00")),
                   Allocation("INV-2026-000002", "payment", "p1", d("10.00"))]


def test_named_invoices_are_paid_first_then_the_oldest():
    got = allocate([inv("A", "2026-01-01", "30.00"), inv("B", "2026-02-01", "50.00"), inv("C", "2026-03-01", "5.00")],
                   [Credit("payment", "p1", d("60.00"))], named=["C", "B"])
    assert [(a.invoice_number, a.amount) for a in got] == [("C", d("5.00")), ("B", d("50.00")), ("A", d("5.00"))]


def test_an_overpayment_is_left_unapplied_and_paid_or_unknown_names_are_passed_over():
    got = allocate([inv("A", "2026-01-01", "30.00"), inv("Z", "2026-01-01", "0.00")],
                   [Credit("payment", "p1", d("100.00"))], named=["Z", "NOPE"])
    assert got == [Allocation("A", "payment", "p1", d("30.00"))]  # 70.00 stays on the payment


amounts = st.decimals(min_value="0.01", max_value="5000", places=2)


@given(st.lists(amounts, max_size=8), st.lists(amounts, max_size=5), st.data())
def test_allocation_never_overpays_an_invoice_nor_spends_more_than_a_credit(opens, credits, data):
    invoices = [inv(f"INV-{i:03d}", "2026-01-01", str(a)) for i, a in enumerate(opens)]
    named = data.draw(st.lists(st.sampled_from([i.number for i in invoices]), max_size=3)) if invoices else []
    cs = [Credit("payment", f"p{i}", a) for i, a in enumerate(credits)]
    got = allocate(invoices, cs, named)
    for i in invoices:
        assert sum((a.amount for a in got if a.invoice_number == i.number), ZERO) <= i.open_amount
    for c in cs:
        assert sum((a.amount for a in got if a.source_id == c.source_id), ZERO) <= c.unapplied
    assert all(a.amount > 0 for a in got)
    # nothing is left on both sides: either every invoice is paid or every credit is spent
    assert sum((a.amount for a in got), ZERO) == min(sum(opens, ZERO), sum(credits, ZERO))


def test_refunds_never_exceed_the_charge():
    assert refundable(d("50.00"), d("20.00")) == d("30.00")
    assert refundable(d("50.00"), d("50.00")) == ZERO
    assert refundable(d("50.00"), d("80.00")) == ZERO


# --- ageing, statements, reminders, mornings --------------------------------------------------------------

@pytest.mark.parametrize("late,expected", [(-5, "current"), (0, "current"), (1, "1-30"), (30, "1-30"),
                                           (31, "31-60"), (60, "31-60"), (61, "61-90"), (90, "61-90"),
                                           (91, "90+")])
def test_ageing_buckets_by_days_overdue(late, expected):
    due = date(2026, 1, 1)
    assert bucket(due, date.fromordinal(due.toordinal() + late)) == expected


def test_ageing_sums_open_amounts_per_bucket():
    got = ageing([inv("A", "2026-01-01", "10.00", due="2026-03-01"), inv("B", "2026-01-01", "5.00", due="2026-02-01"),
                  inv("C", "2026-01-01", "7.00", due="2026-02-01")], date(2026, 3, 1))
    assert got == {"current": d("10.00"), "1-30": d("12.00"), "31-60": ZERO, "61-90": ZERO, "90+": ZERO}


def test_statement_closing_is_opening_plus_invoices_less_payments_and_credit_notes():
    lines = [StatementLine(date(2026, 1, 2), "invoice", "INV-1", d("100.00")),
             StatementLine(date(2026, 1, 3), "payment", "bank-1", d("-30.00")),
             StatementLine(date(2026, 1, 4), "credit_note", "CN-1", d("-20.00"))]
    assert statement_totals(d("5.00"), lines) == {"opening": d("5.00"), "invoices": d("100.00"),
                                                  "payments": d("30.00"), "credit_notes": d("20.00"),
                                                  "closing": d("55.00")}


def test_reminder_steps_reached_and_their_bounds():
    assert reminder_steps_due(date(2026, 1, 1), date(2026, 1, 16), (3, 14, 30)) == [3, 14]
    assert reminder_steps_due(date(2026, 1, 1), date(2026, 1, 1), (3, 14, 30)) == []
    assert parse_steps("30, 3,14") == (3, 14, 30)
    with pytest.raises(ValueError):
        parse_steps("0,3")


def test_the_overdue_check_is_the_next_local_morning_across_a_dst_change():
    # Europe/Warsaw leaves summer time on 25 Oct 2026: 08:00 local is 06:00 UTC before, 07:00 after
    assert next_local_morning(datetime(2026, 10, 24, 7, tzinfo=UTC), "Europe/Warsaw", 8) == \
        datetime(2026, 10, 25, 7, tzinfo=UTC)
    assert next_local_morning(datetime(2026, 10, 24, 5, tzinfo=UTC), "Europe/Warsaw", 8) == \
        datetime(2026, 10, 24, 6, tzinfo=UTC)


def test_an_account_on_hold_is_declined_with_its_reason_and_credit_counts_towards_the_limit():
    held = SupplierAccount("c-1", d("100.00"), d("10.00"), "EUR", 30, "active", on_hold=True)
    assert decide_account_charge(held, Money(amount=d("1.00"), currency="EUR")).reason_code == "account_on_hold"
    credit = SupplierAccount("c-1", d("100.00"), ZERO, "EUR", 30, "active", unapplied_credit=d("50.00"))
    assert decide_account_charge(credit, Money(amount=d("150.00"), currency="EUR")) is None
    assert decide_account_charge(credit, Money(amount=d("150.01"), currency="EUR")).reason_code == \
        "credit_limit_exceeded"


# --- the ledger stays balanced under any sequence -----------------------------------------------------------

class Books:
    """Applies operations the way services/payments/commands.py does (journals from books.py,
    credits applied with allocate, refunds bounded by refundable), in memory."""

    def __init__(self):
        self.entries, self.invoices, self.credits = [], {}, {}
        self.totals = {}          # customer -> {"invoices", "payments", "credit_notes"}
        self.card = {}            # charge -> [charged, refunded]
        self.n = 0

    def _t(self, c):
        return self.totals.setdefault(c, {"invoices": ZERO, "payments": ZERO, "credit_notes": ZERO})

    def _settle(self, c, named=()):
        opens = [OpenInvoice(n, date(2026, 1, 1), date(2026, 1, 1), i["open"])
                 for n, i in sorted(self.invoices.items()) if i["customer"] == c]
        credits = [Credit(k["kind"], s, k["unapplied"]) for s, k in sorted(self.credits.items())
                   if k["customer"] == c and k["unapplied"] > 0]
        for a in allocate(opens, credits, named):
            self.invoices[a.invoice_number]["open"] -= a.amount
            self.credits[a.source_id]["unapplied"] -= a.amount

    def charge(self, c, amount):
        self.n += 1
        number = f"INV-{self.n:06d}"
        self.entries += invoice_journal(c, Money(amount=amount, currency="EUR"), number)
        self.invoices[number] = {"customer": c, "total": amount, "open": amount, "credited": ZERO}
        self._t(c)["invoices"] += amount
        self._settle(c)

    def pay(self, c, amount, named):
        self.n += 1
        self.entries += payment_journal(c, Money(amount=amount, currency="EUR"), f"pay-{self.n}")
        self.credits[f"P{self.n:06d}"] = {"customer": c, "kind": "payment", "unapplied": amount}
        self._t(c)["payments"] += amount
        self._settle(c, named)

    def credit_note(self, number):
        i = self.invoices[number]
        left = refundable(i["total"], i["credited"])
        if left <= 0:
            return
        self.n += 1
        self.entries += credit_note_journal(i["customer"], Money(amount=left, currency="EUR"), f"CN-{self.n}")
        i["credited"] += left
        self.credits[f"C{self.n:06d}"] = {"customer": i["customer"], "kind": "credit_note", "unapplied": left}
        self._t(i["customer"])["credit_notes"] += left
        self._settle(i["customer"], [number])

    def card_charge(self, amount):
        self.n += 1
        self.entries += card_charge_journal(Money(amount=amount, currency="EUR"), f"o-{self.n}")
        self.card[f"o-{self.n}"] = [amount, ZERO]

    def card_refund(self, order):
        charged, refunded = self.card[order]
        left = refundable(charged, refunded)
        if left > 0:
            self.entries += card_refund_journal(Money(amount=left, currency="EUR"), order)
            self.card[order][1] += left

    def balance(self, account):
        return sum((e.signed_amount for e in self.entries if e.account == account), ZERO)


customers = st.sampled_from(["c-1", "c-2", "c-3"])
operations = st.one_of(
    st.tuples(st.just("charge"), customers, amounts),
    st.tuples(st.just("pay"), customers, amounts, st.integers(0, 20)),
    st.tuples(st.just("credit_note"), st.integers(0, 20)),
    st.tuples(st.just("card_charge"), amounts),
    st.tuples(st.just("card_refund"), st.integers(0, 20)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=40))
def test_any_sequence_of_money_operations_keeps_the_books_balanced(ops):
    b = Books()
    for op in ops:
        kind = op[0]
        if kind == "charge":
            b.charge(op[1], op[2])
        elif kind == "pay":
            named = [n for n, i in b.invoices.items() if i["customer"] == op[1]][op[3]:op[3] + 1]
            b.pay(op[1], op[2], named)
        elif kind == "credit_note" and b.invoices:
            b.credit_note(sorted(b.invoices)[op[1] % len(b.invoices)])
        elif kind == "card_charge":
            b.card_charge(op[1])
        elif kind == "card_refund" and b.card:
            b.card_refund(sorted(b.card)[op[1] % len(b.card)])
        # after every operation, not only at the end
        assert sum((e.signed_amount for e in b.entries), ZERO) == 0, "trial balance is not zero"
        for c, t in b.totals.items():
            owed = b.balance(receivable(c))
            assert owed == t["invoices"] - t["payments"] - t["credit_notes"]
            open_ = sum((i["open"] for i in b.invoices.values() if i["customer"] == c), ZERO)
            unapplied = sum((k["unapplied"] for k in b.credits.values() if k["customer"] == c), ZERO)
            assert owed == open_ - unapplied
            assert open_ == 0 or unapplied == 0, "credit left unapplied while an invoice is open"
        for i in b.invoices.values():
            assert 0 <= i["open"] <= i["total"] and i["credited"] <= i["total"]
        for charged, refunded in b.card.values():
            assert refunded <= charged


def test_a_statement_period_is_read_forwards_and_shortened_without_overflow():
    assert statement_period(date(2026, 3, 31), date(2026, 3, 1), 3660) == (date(2026, 3, 1), date(2026, 3, 31))
    assert statement_period(date(2000, 1, 1), date(2026, 1, 1), 10) == (date(2025, 12, 22), date(2026, 1, 1))
    # Regression: GET /accounts/{id}/statement?to=0005-01-01 answered 500 (end - 3660 days overflowed)
    assert statement_period(date(5, 1, 1), date(5, 1, 1), 3660) == (date(5, 1, 1), date(5, 1, 1))
    assert statement_period(date.min, date(5, 1, 1), 3660) == (date.min, date(5, 1, 1))
