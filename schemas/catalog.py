"""Who produces each topic. Consumers are read from the services' handler tables, so the
AsyncAPI document cannot drift from the code that actually subscribes."""

PRODUCERS: dict[str, list[str]] = {
    "OrderPlaced": ["cart", "orders", "upstream EDI gateway"],
    "PaymentVerified": ["payments"],
    "PaymentDeclined": ["payments"],
    "OrderConfirmed": ["orders"],
    "OrderShipped": ["orders", "upstream warehouse system"],
    "OrderCancelled": ["orders"],
    "ProductChanged": ["cart"],
    "SupplierAccountChanged": ["payments"],
    "NotificationSent": ["notifications"],
    "ContactLogged": ["crm", "upstream website tracking, telephony, mail gateway"],
    "TaskChanged": ["crm"],
    "ReminderDue": ["crm"],
    "StandingOrderRequested": ["cart"],
    "StandingOrderChanged": ["scheduler"],
    "RecurringOrderDue": ["scheduler"],
    "StandingOrderOccurrenceFailed": ["orders"],
    "TimerRequested": ["crm"],
    "TimerCancelled": ["crm"],
    "TimerFired": ["scheduler"],
}

ANALYST_CONSUMERS = ["analytics (faust)", "salesbus tap / export"]
