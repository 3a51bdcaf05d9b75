class TransientError(Exception):
    """A fault that will pass (database or broker unreachable, gateway timeout): the runtime retries the whole batch with backoff; never skipped, never dead-lettered."""


class Rejected(Exception):
    """A handler's domain rejection of an event it cannot act on (unknown customer, ...).

    Not a crash: the runtime dead-letters the event with this reason and carries on.
    """
