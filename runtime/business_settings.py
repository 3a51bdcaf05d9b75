"""The settings that change how the business runs (not how the machinery does), in one list: shown
by `salesbus up --help` and `salesbus demo --help`, and written out in docs/settings.md (a unit
test keeps the three in step). Each is read where it is used; this list only describes them."""
from __future__ import annotations

#: (environment variable, default, what it decides)
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("SALESBUS_DC_SHIP_DELAY_S", "-1 (off)",
     "seconds before the simulated distribution centre ships each confirmed order by itself; negative: "
     "off, the warehouse ships (`salesbus ship`, POST /orders/{id}/shipments). `salesbus up`: off "
     "(--dc-ship-delay); `salesbus demo`: on, 1.5 s"),
    ("SALESBUS_CRM_FOLLOW_UP_DAYS", "3",
     "days after an order ships that the salesperson's follow-up call task is due"),
    ("SALESBUS_CRM_REMINDER_LEAD_HOURS", "24",
     "hours before a task is due that its reminder is emailed to the salesperson (at once when "
     "created inside that window)"),
    ("SALESBUS_CRM_REORDER_LEAD_DAYS", "3",
     "days before a customer's predicted next order that a reorder call task is due"),
    ("SALESBUS_CRM_NEW_CUSTOMER_SALESPERSON", "sales-desk",
     "the salesperson who owns a profile the CRM learns from a customer's first order (source "
     "first_order, needs_review) until a salesperson completes it"),
    ("SALESBUS_CRM_NEW_CUSTOMER_SALESPERSON_EMAIL", "sales@salesbus.example",
     "where that salesperson's task reminders are emailed"),
    ("SALESBUS_OVERDUE_REMINDER_DAYS", "3,14,30",
     "days past due at which an invoice reminder is emailed (once per step)"),
    ("SALESBUS_OVERDUE_HOLD_AFTER_DAYS", "30",
     "days overdue that put a supplier account on hold (new account orders declined)"),
    ("SALESBUS_OVERDUE_LOCAL_HOUR", "8", "the customer's local hour the overdue run happens at"),
    ("SALESBUS_CURRENCIES", "EUR,USD,GBP,PLN", "currencies sold in; orders in others are declined"),
    ("SALESBUS_CARD_GATEWAY", "simulated",
     "card gateway: simulated (test tokens below) or stripe (SALESBUS_CARD_GATEWAY_STRIPE_API_KEY)"),
)

#: the simulated card gateway's test tokens (services/payments/simulated_gateway.py)
TEST_TOKENS: tuple[tuple[str, str], ...] = (
    ("tok_visa_approved", "approved (so is any other well-formed token tok_[A-Za-z0-9_]{4,64} not below)"),
    ("tok_insufficient_funds", "declined: insufficient_funds, nothing charged"),
    ("tok_fraud_suspected", "declined: suspected_fraud, nothing charged"),
    ("tok_timeout_once", "the first charge times out after charging; the retry gets the same authorisation, "
                         "no second charge"),
)


def tokens_sentence() -> str:
    """The test tokens in one sentence, for OpenAPI descriptions (cart's checkout, payments)."""
    return ("With the simulated card gateway (SALESBUS_CARD_GATEWAY=simulated, the embedded default) the test "
            "tokens are: " + "; ".join(f"{token}: {what}" for token, what in TEST_TOKENS) + ".")


def help_text() -> str:
    """For a command's --help epilog (typer's rich help keeps lines apart with blank lines)."""
    lines = ["Business settings (environment; docs/settings.md):"]
    lines += [f"{name}={default}: {what}" for name, default, what in SETTINGS]
    lines.append("Simulated card gateway test tokens: "
                 + "; ".join(f"{token}: {what}" for token, what in TEST_TOKENS))
    return "\n\n".join(lines)
