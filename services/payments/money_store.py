"""The payments service's SQL for documents: invoices, payments received, credit notes, their
allocations, refunds, cancellations seen and overdue reminders. Plain parameterised statements on
the caller's connection; the caller owns the transaction (and holds the account's row lock)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from services.payments.books import Allocation, Credit, OpenInvoice


def order_lock(conn: psycopg.Connection, order_id: str) -> None:
    """Serialise everything about one order (its charge and its cancellation) for this transaction:
    whichever commits first, the other then reads what it did."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('payments-order:' || %s, 0))", (order_id,))


#: The next number of a series for a year, gap-free: the first of a year inserts 1, every later
#: one increments the row it conflicts with, which stays locked in the caller's transaction (a
#: rollback returns the number). One statement (it was an INSERT ... DO NOTHING, then the UPDATE);
#: the number is formatted here, INV-2026-000042, so next_number and insert_invoice (which draws it
#: inside its INSERT) cannot format it differently.
_DRAW_NUMBER = """INSERT INTO document_counter AS c (series, year, last_number) VALUES (%(series)s, %(year)s, 1)
                  ON CONFLICT (series, year) DO UPDATE SET last_number = c.last_number + 1
                  RETURNING c.last_number AS seq,
                            c.series || '-' || c.year || '-'
                            || lpad(c.last_number::text, greatest(6, length(c.last_number::text)), '0') AS number"""


def next_number(conn: psycopg.Connection, series: str, year: int) -> tuple[str, int]:
    """The next number of the series for the year and its sequence, gap-free (_DRAW_NUMBER)."""
    row = conn.execute(_DRAW_NUMBER, {"series": series, "year": year}).fetchone()
    return row["number"], row["seq"]


# --- invoices -------------------------------------------------------------------------------------------

def insert_invoice(conn: psycopg.Connection, *, year: int, customer_id: str, order_id: str,
                   journal_id: str, currency: str, total: Decimal, tax_total: Decimal, lines: list[dict],
                   issue_date: date, due_date: date, now: datetime) -> str:
    """Insert the invoice under the next INV number of `year`, drawn in the same statement
    (_DRAW_NUMBER, as next_number draws it); returns the number. One statement per invoice, not two."""
    return conn.execute(
        f"""WITH n AS ({_DRAW_NUMBER})
            INSERT INTO invoice (invoice_number, year, seq, customer_id, order_id, journal_id, currency, total,
                                 tax_total, open_amount, lines, issue_date, due_date, issued_at)
            SELECT n.number, %(year)s, n.seq, %(customer)s, %(order)s, %(journal)s, %(currency)s, %(total)s,
                   %(tax)s, %(total)s, %(lines)s, %(issued)s, %(due)s, %(now)s
            FROM n
            RETURNING invoice_number""",
        {"series": "INV", "year": year, "customer": customer_id, "order": order_id, "journal": journal_id, "currency": currency,
         "total": total, "tax": tax_total, "lines": Jsonb(lines), "issued": issue_date, "due": due_date,
         "now": now}).fetchone()["invoice_number"]


def invoice(conn: psycopg.Connection, number: str) -> dict | None:
    return conn.execute("SELECT * FROM invoice WHERE invoice_number = %s", (number,)).fetchone()


def invoice_for_order(conn: psycopg.Connection, order_id: str) -> dict | None:
    return conn.execute("SELECT * FROM invoice WHERE order_id = %s FOR UPDATE", (order_id,)).fetchone()


def invoices(conn: psycopg.Connection, customer_id: str | None, only_open: bool, limit: int,
             offset: int = 0) -> tuple[int, list[dict]]:
    """(how many, this page) of the invoices, newest first."""
    where = "(%(c)s::text IS NULL OR customer_id = %(c)s) AND (NOT %(o)s OR open_amount > 0)"
    params = {"c": customer_id, "o": only_open, "l": limit, "off": offset}
    total = conn.execute(f"SELECT count(*) AS n FROM invoice WHERE {where}", params).fetchone()["n"]
    rows = conn.execute(f"""SELECT * FROM invoice WHERE {where}
                            ORDER BY issue_date DESC, invoice_number DESC LIMIT %(l)s OFFSET %(off)s""",
                        params).fetchall()
    return total, rows


def allocations_of(conn: psycopg.Connection, number: str) -> list[dict]:
    return conn.execute("SELECT source_kind, source_id, amount, allocated_at FROM allocation "
                        "WHERE invoice_number = %s ORDER BY allocation_id", (number,)).fetchall()


def open_invoices(conn: psycopg.Connection, customer_id: str) -> list[OpenInvoice]:
    rows = conn.execute(
        """SELECT invoice_number, issue_date, due_date, open_amount FROM invoice
           WHERE customer_id = %s AND open_amount > 0 ORDER BY issue_date, invoice_number""",
        (customer_id,)).fetchall()
    return [OpenInvoice(r["invoice_number"], r["issue_date"], r["due_date"], r["open_amount"]) for r in rows]


# --- credits: payments received and credit notes -------------------------------------------------------

def payment_by_reference(conn: psycopg.Connection, payer_reference: str) -> dict | None:
    return conn.execute("SELECT * FROM payment_received WHERE payer_reference = %s", (payer_reference,)).fetchone()


def insert_payment(conn: psycopg.Connection, *, payment_id: str, payer_reference: str, customer_id: str,
                   currency: str, amount: Decimal, received_on: date, named: list[str], note: str | None,
                   recorded_by: str, now: datetime, journal_id: str) -> bool:
    """False when the payer's reference is already recorded (a replay, or a concurrent copy)."""
    row = conn.execute(
        """INSERT INTO payment_received (payment_id, payer_reference, customer_id, currency, amount, unapplied,
                                         received_on, named_invoices, note, recorded_by, recorded_at, journal_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (payer_reference) DO NOTHING RETURNING payment_id""",
        (payment_id, payer_reference, customer_id, currency, amount, amount, received_on, Jsonb(named), note,
         recorded_by, now, journal_id)).fetchone()
    return row is not None


def insert_credit_note(conn: psycopg.Connection, *, number: str, year: int, seq: int, customer_id: str,
                       order_id: str, invoice_number: str | None, currency: str, amount: Decimal, reason: str,
                       issue_date: date, now: datetime, journal_id: str) -> None:
    conn.execute(
        """INSERT INTO credit_note (credit_note_number, year, seq, customer_id, order_id, invoice_number, currency,
                                    amount, unapplied, reason, issue_date, issued_at, journal_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (number, year, seq, customer_id, order_id, invoice_number, currency, amount, amount, reason[:2000],
         issue_date, now, journal_id))


def unapplied_credits(conn: psycopg.Connection, customer_id: str) -> list[Credit]:
    """Money on the account not yet applied, oldest first."""
    rows = conn.execute(
        """SELECT 'payment' AS kind, payment_id AS id, unapplied, recorded_at AS at FROM payment_received
           WHERE customer_id = %(c)s AND unapplied > 0
           UNION ALL
           SELECT 'credit_note', credit_note_number, unapplied, issued_at FROM credit_note
           WHERE customer_id = %(c)s AND unapplied > 0
           ORDER BY at, id""", {"c": customer_id}).fetchall()
    return [Credit(r["kind"], r["id"], r["unapplied"]) for r in rows]


def apply(conn: psycopg.Connection, allocations: list[Allocation], now: datetime) -> None:
    """Record the allocations and move the amounts from the credits to the invoices (the CHECKs
    refuse an invoice paid below zero or a credit applied beyond itself)."""
    for a in allocations:
        conn.execute("INSERT INTO allocation (invoice_number, source_kind, source_id, amount, allocated_at) "
                     "VALUES (%s, %s, %s, %s, %s)", (a.invoice_number, a.kind, a.source_id, a.amount, now))
        conn.execute("UPDATE invoice SET open_amount = open_amount - %s WHERE invoice_number = %s",
                     (a.amount, a.invoice_number))
        table, key = ("payment_received", "payment_id") if a.kind == "payment" else \
            ("credit_note", "credit_note_number")
        conn.execute(f"UPDATE {table} SET unapplied = unapplied - %s WHERE {key} = %s", (a.amount, a.source_id))


def mark_credited(conn: psycopg.Connection, invoice_number: str, amount: Decimal) -> None:
    conn.execute("UPDATE invoice SET credited = credited + %s WHERE invoice_number = %s", (amount, invoice_number))


def sync_account_totals(conn: psycopg.Connection, customer_id: str, now: datetime) -> None:
    """The account's open balance and unapplied credit, recomputed from its documents (the
    running totals can then never drift from what the invoices and credits say). Only open
    documents are summed, through partial indexes: the work follows what is open, not the
    account's history (it grew with every invoice before: issue 11's payments finding)."""
    conn.execute(
        """UPDATE supplier_account a SET
              open_balance = (SELECT COALESCE(sum(open_amount), 0.00) FROM invoice
                              WHERE customer_id = a.customer_id AND open_amount > 0),
              unapplied_credit =
                (SELECT COALESCE(sum(unapplied), 0.00) FROM payment_received
                 WHERE customer_id = a.customer_id AND unapplied > 0)
              + (SELECT COALESCE(sum(unapplied), 0.00) FROM credit_note
                 WHERE customer_id = a.customer_id AND unapplied > 0),
              changed_at = %s
           WHERE customer_id = %s""", (now, customer_id))


# --- cancellations and refunds ----------------------------------------------------------------------------

def remember_cancellation(conn: psycopg.Connection, order_id: str, customer_id: str, reason: str,
                          cancelled_at: datetime) -> None:
    conn.execute("INSERT INTO order_cancellation (order_id, customer_id, reason, cancelled_at) "
                 "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (order_id, customer_id, reason, cancelled_at))


def refund_of(conn: psycopg.Connection, order_id: str) -> dict | None:
    return conn.execute("SELECT * FROM refund WHERE order_id = %s", (order_id,)).fetchone()


def insert_refund(conn: psycopg.Connection, *, order_id: str, method: str, amount: Decimal, currency: str,
                  reference: str, journal_id: str, now: datetime) -> None:
    conn.execute("INSERT INTO refund (order_id, method, amount, currency, refund_reference, journal_id, refunded_at) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (order_id, method, amount, currency, reference, journal_id, now))


# --- statements ---------------------------------------------------------------------------------------------

def documents_between(conn: psycopg.Connection, customer_id: str, start: date | None, end: date) -> list[dict]:
    """Invoices, payments received and credit notes dated in [start, end] (all up to `end` when
    start is None), as (day, kind, document, amount signed as it moves the balance)."""
    return conn.execute(
        """SELECT * FROM (
             SELECT issue_date AS day, 'invoice' AS kind, invoice_number AS document, total AS amount
             FROM invoice WHERE customer_id = %(c)s
             UNION ALL
             SELECT received_on, 'payment', payer_reference, -amount FROM payment_received WHERE customer_id = %(c)s
             UNION ALL
             SELECT issue_date, 'credit_note', credit_note_number, -amount FROM credit_note WHERE customer_id = %(c)s
           ) d WHERE (%(s)s::date IS NULL OR d.day >= %(s)s) AND d.day <= %(e)s
           ORDER BY d.day, d.kind DESC, d.document LIMIT 5001""",
        {"c": customer_id, "s": start, "e": end}).fetchall()


def balance_before(conn: psycopg.Connection, customer_id: str, start: date) -> Decimal:
    row = conn.execute(
        """SELECT (SELECT COALESCE(sum(total), 0.00) FROM invoice WHERE customer_id = %(c)s AND issue_date < %(s)s)
                - (SELECT COALESCE(sum(amount), 0.00) FROM payment_received
                   WHERE customer_id = %(c)s AND received_on < %(s)s)
                - (SELECT COALESCE(sum(amount), 0.00) FROM credit_note WHERE customer_id = %(c)s AND issue_date < %(s)s)
                  AS opening""", {"c": customer_id, "s": start}).fetchone()
    return row["opening"]


def trial_balance(conn: psycopg.Connection) -> list[dict]:
    """Every ledger account's balance (debits - credits) per currency."""
    return conn.execute(
        """SELECT account, currency,
                  COALESCE(sum(amount) FILTER (WHERE side = 'debit'), 0.00) AS debits,
                  COALESCE(sum(amount) FILTER (WHERE side = 'credit'), 0.00) AS credits
           FROM ledger_entry GROUP BY account, currency ORDER BY currency, account""").fetchall()


# --- overdue ------------------------------------------------------------------------------------------------

def schedule_overdue_check(conn: psycopg.Connection, customer_id: str, at: datetime | None) -> None:
    conn.execute("UPDATE supplier_account SET next_overdue_check_at = %s WHERE customer_id = %s", (at, customer_id))


def ensure_overdue_check(conn: psycopg.Connection, customer_id: str, now: datetime) -> None:
    """An account that owes something is looked at by the overdue worker (which then keeps it on
    the customer's local mornings)."""
    # Only when unset: an UPDATE that keeps the value still writes a new row version, and this
    # runs for every invoice on the account's one (hot) row.
    conn.execute("UPDATE supplier_account SET next_overdue_check_at = %s "
                 "WHERE customer_id = %s AND next_overdue_check_at IS NULL", (now, customer_id))


def lock_due_overdue_checks(conn: psycopg.Connection, now: datetime, limit: int) -> list[str]:
    """Accounts whose local morning has come, locked; another replica skips them."""
    rows = conn.execute(
        """SELECT customer_id FROM supplier_account WHERE next_overdue_check_at <= %s
           ORDER BY next_overdue_check_at LIMIT %s FOR UPDATE SKIP LOCKED""", (now, limit)).fetchall()
    return [r["customer_id"] for r in rows]


def claim_reminder(conn: psycopg.Connection, invoice_number: str, step_days: int, now: datetime) -> bool:
    row = conn.execute("INSERT INTO overdue_reminder (invoice_number, step_days, sent_at) VALUES (%s, %s, %s) "
                       "ON CONFLICT DO NOTHING RETURNING step_days", (invoice_number, step_days, now)).fetchone()
    return row is not None


def set_hold(conn: psycopg.Connection, customer_id: str, on_hold: bool, now: datetime) -> None:
    conn.execute("UPDATE supplier_account SET on_hold = %s, held_at = CASE WHEN %s THEN %s END, changed_at = %s "
                 "WHERE customer_id = %s", (on_hold, on_hold, now, now, customer_id))
