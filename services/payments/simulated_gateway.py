"""A simulated card gateway implementing the `CardGateway` port.

Its idempotency memory lives in a sqlite3 file: it stands for the gateway's own
memory, so it survives our restarts, and several processes may share one file
(each authorise runs in one `BEGIN IMMEDIATE` transaction keyed by idempotency key).

Test tokens:

    ======================  =====================================================
    token                   result
    ======================  =====================================================
    tok_visa_approved       approved (so is any other well-formed token not below)
    tok_insufficient_funds  CardDeclined("insufficient_funds"), nothing charged
    tok_fraud_suspected     CardDeclined("suspected_fraud"), nothing charged
    tok_timeout_once        first authorise for a key charges the card, then raises
                            GatewayTimeout (the response was lost); a retry with the
                            same key returns the SAME authorisation, no new charge;
                            its first refund for a key times out the same way
    ======================  =====================================================

Refunds are kept per idempotency key too; the refunds of one charge never add up to more than
it (RefundRefused).

Its state file is Settings.card_gateway_state (``SALESBUS_CARD_GATEWAY_STATE``), by default
``<data dir>/card-gateway.sqlite``.

A well-formed token matches ``tok_[A-Za-z0-9_]{4,64}``; anything else is a ValueError.
Reusing an idempotency key with a different amount or token is a programming error
(ValueError), as it is on real gateways.
"""
from __future__ import annotations

import re
import sqlite3
import uuid
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from runtime.config import Settings
from schemas.types import Money
from services.payments.gateway import Authorisation, CardDeclined, GatewayTimeout, Refund, RefundRefused

_TOKEN = re.compile(r"^tok_[A-Za-z0-9_]{4,64}$")
_DECLINES = {
    "tok_insufficient_funds": ("insufficient_funds", "the card has insufficient funds"),
    "tok_fraud_suspected": ("suspected_fraud", "the card issuer suspects fraud and refused the charge"),
}
TIMEOUT_ONCE = "tok_timeout_once"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key  TEXT PRIMARY KEY,
    token            TEXT NOT NULL,
    amount           TEXT NOT NULL,
    currency         TEXT NOT NULL,
    authorisation_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key  TEXT PRIMARY KEY,
    authorisation_id TEXT NOT NULL REFERENCES charges (authorisation_id),
    amount           TEXT NOT NULL,
    currency         TEXT NOT NULL,
    refund_id        TEXT NOT NULL UNIQUE
)"""


class SimulatedGateway:
    def __init__(self, state_path: Path) -> None:
        self._path = Path(state_path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # autocommit mode; transactions are explicit
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    def authorise(self, token: str, amount: Money, idempotency_key: str) -> Authorisation:
        if not _TOKEN.match(token):
            raise ValueError(f"malformed card token {token!r}")
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        if amount.amount <= 0:
            raise ValueError(f"cannot authorise a non-positive amount {amount}")
        if token in _DECLINES:
            raise CardDeclined(*_DECLINES[token])
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                inserted = db.execute(
                    "INSERT OR IGNORE INTO charges VALUES (?, ?, ?, ?, ?)",
                    (idempotency_key, token, format(amount.amount, "f"), amount.currency,
                     f"auth_{uuid.uuid4().hex}"),
                ).rowcount == 1
                row = db.execute("SELECT token, amount, currency, authorisation_id FROM charges "
                                 "WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        stored_token, stored_amount, stored_currency, authorisation_id = row
        stored = Money(amount=Decimal(stored_amount), currency=stored_currency)
        if stored.amount != amount.amount or stored.currency != amount.currency or stored_token != token:
            raise ValueError(f"idempotency key {idempotency_key!r} was first used for {stored} on "
                             f"{stored_token}, now for {amount} on {token}")
        if inserted and token == TIMEOUT_ONCE:
            raise GatewayTimeout(f"gateway did not answer for key {idempotency_key!r}")
        return Authorisation(authorisation_id=authorisation_id, amount=stored)

    def refund(self, authorisation_id: str, amount: Money, idempotency_key: str) -> Refund:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        if amount.amount <= 0:
            raise ValueError(f"cannot refund a non-positive amount {amount}")
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT token, amount, currency FROM charges WHERE authorisation_id = ?",
                                 (authorisation_id,)).fetchone()
                existing = db.execute("SELECT authorisation_id, amount, currency, refund_id FROM refunds "
                                      "WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
                inserted = False
                if existing is None:
                    if row is None:
                        raise RefundRefused(f"no charge {authorisation_id!r} to refund")
                    if row[2] != amount.currency:
                        raise RefundRefused(f"charge {authorisation_id} is in {row[2]}, not {amount.currency}")
                    done = sum((Decimal(a) for (a,) in db.execute(
                        "SELECT amount FROM refunds WHERE authorisation_id = ?", (authorisation_id,))), Decimal(0))
                    if done + amount.amount > Decimal(row[1]):
                        raise RefundRefused(f"refund of {amount} would exceed charge {authorisation_id} of "
                                            f"{row[1]} {row[2]} ({done} already refunded)")
                    existing = (authorisation_id, format(amount.amount, "f"), amount.currency,
                                f"re_{uuid.uuid4().hex}")
                    db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?, ?)", (idempotency_key, *existing))
                    inserted = True
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if (existing[0], Decimal(existing[1]), existing[2]) != (authorisation_id, amount.amount, amount.currency):
            raise ValueError(f"refund key {idempotency_key!r} was first used for {existing[1]} {existing[2]} of "
                             f"{existing[0]}, now for {amount} of {authorisation_id}")
        if inserted and row[0] == TIMEOUT_ONCE:
            raise GatewayTimeout(f"gateway did not answer the refund for key {idempotency_key!r}")
        return Refund(refund_id=existing[3], amount=Money(amount=Decimal(existing[1]), currency=existing[2]))

    def refunds_for(self, authorisation_id: str) -> list[Decimal]:
        """The amounts refunded of this charge."""
        with closing(self._connect()) as db:
            return [Decimal(a) for (a,) in db.execute("SELECT amount FROM refunds WHERE authorisation_id = ?",
                                                      (authorisation_id,))]

    def charges_for(self, idempotency_key: str) -> int:
        """How many charges the gateway actually made for this key (0 or 1)."""
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM charges WHERE idempotency_key = ?",
                              (idempotency_key,)).fetchone()[0]

    def total_charged(self, currency: str | None = None) -> Decimal:
        """Sum of every charge made (optionally only those in `currency`)."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT amount, currency FROM charges").fetchall()
        return sum((Decimal(a) for a, c in rows if currency is None or c == currency), Decimal(0))


def state_path(cfg: Settings) -> Path:
    return Path(cfg.card_gateway_state or Path(cfg.data_dir) / "card-gateway.sqlite")


def from_settings(cfg: Settings) -> SimulatedGateway:
    return SimulatedGateway(state_path(cfg).resolve())
