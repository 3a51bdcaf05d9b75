"""The payments service's SQL: payment decisions, supplier accounts, the ledger.

Plain parameterised statements on the caller's connection (rows are dicts); the caller owns
the transaction.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg

from services.payments.ledger import LedgerEntry, SupplierAccount, receivable

_ACCOUNT_COLUMNS = ("customer_id, credit_limit, open_balance, currency, payment_terms_days, status, "
                    "unapplied_credit, on_hold, terms_kind, time_zone, billing_email, language")


# --- payment decisions ----------------------------------------------------------------------------

def claim_payment(conn: psycopg.Connection, order_id: str, customer_id: str, method: str,
                  event_id: str, now: datetime) -> str | None:
    """Take the order for this event: None if another event already has it, else "cancelled"
    when a cancellation of the order came first (nothing may be charged), "open" otherwise.

    A concurrent claimant of the same order waits here on the primary key until the first
    transaction ends: it then finds the order taken (commit) or takes it (rollback). The
    cancellation is read in the same statement (it was one more per order); the caller holds
    the order's lock (money_store.order_lock) from the statement before, so this statement's
    snapshot already shows a cancellation that committed while it waited for it.
    """
    row = conn.execute(
        """INSERT INTO payment (order_id, customer_id, method, status, claimed_by_event, claimed_at)
           VALUES (%(order)s, %(customer)s, %(method)s, 'claimed', %(event)s, %(now)s)
           ON CONFLICT (order_id) DO NOTHING
           RETURNING CASE WHEN EXISTS (SELECT 1 FROM order_cancellation WHERE order_id = %(order)s)
                          THEN 'cancelled' ELSE 'open' END AS state""",
        {"order": order_id, "customer": customer_id, "method": method, "event": event_id, "now": now}).fetchone()
    return None if row is None else row["state"]


def record_verified(conn: psycopg.Connection, order_id: str, amount: Decimal, currency: str,
                    charge_reference: str, now: datetime) -> None:
    conn.execute(
        """UPDATE payment SET status = 'verified', charged_amount = %s, currency = %s,
                              charge_reference = %s, decided_at = %s
           WHERE order_id = %s AND status = 'claimed'""",
        (amount, currency, charge_reference, now, order_id))


def record_declined(conn: psycopg.Connection, order_id: str, reason_code: str, message: str,
                    now: datetime) -> None:
    conn.execute(
        """UPDATE payment SET status = 'declined', reason_code = %s, message = %s, decided_at = %s
           WHERE order_id = %s AND status = 'claimed'""",
        (reason_code, message, now, order_id))


def payment(conn: psycopg.Connection, order_id: str) -> dict | None:
    return conn.execute("SELECT * FROM payment WHERE order_id = %s", (order_id,)).fetchone()


# --- supplier accounts ----------------------------------------------------------------------------

def _account(row: dict | None) -> SupplierAccount | None:
    return SupplierAccount(**{k: row[k] for k in _ACCOUNT_COLUMNS.split(", ")}) if row else None


def lock_account(conn: psycopg.Connection, customer_id: str) -> SupplierAccount | None:
    """The account, row-locked until the transaction ends: charges and term changes queue up."""
    return _account(conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM supplier_account "
                                 "WHERE customer_id = %s FOR UPDATE", (customer_id,)).fetchone())


def next_announcement(conn: psycopg.Connection, customer_id: str) -> tuple[SupplierAccount, int]:
    """The account as it now stands and its next announcement version, in one statement (the
    caller holds the account's row lock)."""
    row = conn.execute(f"UPDATE supplier_account SET announced_version = announced_version + 1 "
                       f"WHERE customer_id = %s RETURNING {_ACCOUNT_COLUMNS}, announced_version",
                       (customer_id,)).fetchone()
    return _account(row), row["announced_version"]


def add_invoice_and_announce(conn: psycopg.Connection, customer_id: str, amount: Decimal,
                             now: datetime) -> tuple[SupplierAccount, int]:
    """A new invoice on an account with no unapplied credit, in one statement on the account's
    row (the caller holds its lock): the balance sync_account_totals would compute is the one it
    computed last plus this invoice; the account, which now owes something, goes on the overdue
    worker's list unless it is on it already (money_store.ensure_overdue_check's rule); and the
    account as it now stands with its next announcement version is returned (next_announcement).
    Three statements and three row versions of the hot account row per invoice before."""
    row = conn.execute(
        f"""UPDATE supplier_account SET open_balance = open_balance + %s, changed_at = %s,
                   next_overdue_check_at = COALESCE(next_overdue_check_at, %s),
                   announced_version = announced_version + 1
            WHERE customer_id = %s RETURNING {_ACCOUNT_COLUMNS}, announced_version""",
        (amount, now, now, customer_id)).fetchone()
    return _account(row), row["announced_version"]


def account_row(conn: psycopg.Connection, customer_id: str) -> dict | None:
    return conn.execute("SELECT * FROM supplier_account WHERE customer_id = %s", (customer_id,)).fetchone()


def open_account(conn: psycopg.Connection, a: SupplierAccount, changed_by: str, now: datetime) -> bool:
    """Open the account; False if it already exists (a concurrent request opened it)."""
    row = conn.execute(
        """INSERT INTO supplier_account (customer_id, credit_limit, open_balance, currency, payment_terms_days,
                                         status, opened_at, changed_at, changed_by, terms_kind, time_zone,
                                         billing_email, language)
           VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id""",
        (a.customer_id, a.credit_limit, a.currency, a.payment_terms_days, a.status, now, now, changed_by,
         a.terms_kind, a.time_zone, a.billing_email, a.language)).fetchone()
    return row is not None


def change_terms(conn: psycopg.Connection, a: SupplierAccount, changed_by: str, now: datetime) -> None:
    conn.execute(
        """UPDATE supplier_account SET credit_limit = %s, currency = %s, payment_terms_days = %s, status = %s,
                                       changed_at = %s, changed_by = %s, terms_kind = %s, time_zone = %s,
                                       billing_email = %s, language = %s
           WHERE customer_id = %s""",
        (a.credit_limit, a.currency, a.payment_terms_days, a.status, now, changed_by, a.terms_kind, a.time_zone,
         a.billing_email, a.language, a.customer_id))


def raise_open_balance(conn: psycopg.Connection, customer_id: str, amount: Decimal) -> None:
    conn.execute("UPDATE supplier_account SET open_balance = open_balance + %s WHERE customer_id = %s",
                 (amount, customer_id))


# --- ledger ---------------------------------------------------------------------------------------

def book(conn: psycopg.Connection, journal_id: str, entries: list[LedgerEntry], *, customer_id: str,
         order_id: str | None, booked_at: datetime, due_on: date | None, document: str | None = None) -> None:
    """Write one journal, all its entries in one statement (executemany sent one per entry); the
    receivable side carries the invoice's due date."""
    conn.execute(
        """INSERT INTO ledger_entry (journal_id, account, side, amount, currency, customer_id, order_id,
                                     booked_at, due_on, document)
           SELECT %(journal)s, e.account, e.side, e.amount, e.currency, %(customer)s, %(order)s, %(at)s,
                  e.due_on, %(document)s
           FROM unnest(%(accounts)s::text[], %(sides)s::text[], %(amounts)s::numeric[], %(currencies)s::text[],
                       %(due)s::date[]) WITH ORDINALITY AS e(account, side, amount, currency, due_on, n)
           ORDER BY e.n""",
        {"journal": journal_id, "customer": customer_id, "order": order_id, "at": booked_at, "document": document,
         "accounts": [e.account for e in entries], "sides": [e.side for e in entries],
         "amounts": [e.amount.amount for e in entries], "currencies": [e.amount.currency for e in entries],
         "due": [due_on if e.account == receivable(customer_id) else None for e in entries]})


def statement(conn: psycopg.Connection, customer_id: str, limit: int) -> list[dict]:
    """The customer's receivable entries, newest first."""
    return conn.execute(
        """SELECT entry_id, journal_id, order_id, document, side, amount, currency, booked_at, due_on
           FROM ledger_entry WHERE account = %s ORDER BY entry_id DESC LIMIT %s""",
        (receivable(customer_id), limit)).fetchall()


def totals_by_currency(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        """SELECT currency,
                  COALESCE(sum(amount) FILTER (WHERE side = 'debit'), 0)  AS debits,
                  COALESCE(sum(amount) FILTER (WHERE side = 'credit'), 0) AS credits,
                  count(*) AS entries
           FROM ledger_entry GROUP BY currency ORDER BY currency""").fetchall()


def unbalanced_journals(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """SELECT journal_id FROM ledger_entry GROUP BY journal_id, currency
           HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0
           ORDER BY journal_id LIMIT 100""").fetchall()
    return [r["journal_id"] for r in rows]


def balances_not_matching_receivables(conn: psycopg.Connection) -> list[str]:
    """Accounts whose open balance less unapplied credit differs from what their receivable
    entries add up to (invoices - payments - credit notes)."""
    rows = conn.execute(
        """SELECT a.customer_id FROM supplier_account a
           LEFT JOIN (SELECT account, sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) AS owed
                      FROM ledger_entry WHERE account LIKE %s GROUP BY account) r
                  ON r.account = %s || a.customer_id
           WHERE a.open_balance - a.unapplied_credit <> COALESCE(r.owed, 0)
           ORDER BY a.customer_id LIMIT 100""", (receivable("%"), receivable(""))).fetchall()
    return [r["customer_id"] for r in rows]
