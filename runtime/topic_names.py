"""Topic names typed by people (`salesbus tap`, `export`, `dlq ...`): a mistyped one is refused
with the nearest known name and the full list, instead of following a topic nobody writes to
(before: `salesbus tap OrderPlcaed` printed nothing and exited 0)."""
from __future__ import annotations

import difflib

from schemas import TOPICS, dlq_topic


class UnknownTopic(ValueError):
    pass


def known(events: bool = True, dead_letters: bool = True) -> list[str]:
    """The event topics of the schemas registry and/or their dead-letter topics."""
    return [t for topic in TOPICS for t in ((topic,) if events else ()) + ((dlq_topic(topic),) if dead_letters else ())]


def check(names: list[str], events: bool = True, dead_letters: bool = True) -> list[str]:
    """`names` when every one is known; else UnknownTopic naming the first unknown one, its
    nearest known names (difflib) and every known topic."""
    allowed = known(events, dead_letters)
    for name in names:
        if name in allowed:
            continue
        # a DLQ name is compared with DLQ names, an event name with event names (when allowed)
        pool = known(events=not name.endswith(".DLQ") or not dead_letters,
                     dead_letters=name.endswith(".DLQ") or not events)
        pool = [t for t in pool if t in allowed] or allowed
        near = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ";"
        listed = ", ".join(known(events=events, dead_letters=not events))
        tail = " (and each one's <topic>.DLQ)" if events and dead_letters else ""
        raise UnknownTopic(f"unknown topic {name}{hint} known: {listed}{tail}")
    return names
