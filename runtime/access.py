"""Who may call what: the role groups every API uses, and the one "owner or 404" rule.

A customer sees only what belongs to them; anything else answers 404 exactly like something
that does not exist, so ids cannot be probed. Staff roles act for every customer.
"""
from __future__ import annotations

from typing import TypeVar

from runtime.auth import Principal
from runtime.problems import NotFound

#: staff who act for any customer
STAFF = ("operator", "warehouse", "salesperson")
#: a customer or the staff who act for customers (the warehouse only ships)
ACTS_FOR_CUSTOMERS = ("customer", "operator", "salesperson")
#: everyone with an API key who may read a customer's orders
ANYONE = ("customer", *STAFF)
#: who keeps the CRM (profiles, contact log, tasks): salespeople and operators, not the warehouse
CUSTOMER_CARE = ("salesperson", "operator")
#: who reads the analytics views and exports: analysts and operators
ANALYSTS = ("analyst", "operator")
#: who reads a supplier account (balance, invoices, statements): its customer and operators
ACCOUNT_READERS = ("operator", "customer")

T = TypeVar("T")


def owned_or_404(thing: T | None, customer_id: str | None, principal: Principal, what: str) -> T:
    """`thing` if it exists and `principal` may act for its customer; NotFound("no <what>") otherwise.
    `customer_id` is the thing's owner (ignored when the thing is None)."""
    if thing is None or customer_id is None or not principal.can_act_for_customer(customer_id):
        raise NotFound(f"no {what}")
    return thing


def customer_or_404(customer_id: str, principal: Principal) -> str:
    """A path's customer id, if the caller may act for that customer (a customer only for itself)."""
    if not principal.can_act_for_customer(customer_id):
        raise NotFound(f"no customer {customer_id}")
    return customer_id
