"""Ends expired sessions (revoking their API keys) and forgets old sign-in links and requests."""
from __future__ import annotations

import logging
from datetime import timedelta

from runtime.auth import revoke_key
from runtime.containment import guarded_loop
from services.web import store

log = logging.getLogger(__name__)
BATCH = 200
#: sign-in requests and used links are kept a day (the rate limit looks back 15 minutes)
KEEP = timedelta(days=1)


def step(ctx) -> bool:
    with ctx.unit_of_work() as uow:
        keys = store.delete_expired(uow.conn, uow.now(), KEEP, BATCH)
    # Revoked after the commit: a key is never revoked for a session that is still there. A crash in
    # between leaves a key no session holds (it cannot be used from the pages), revoked by nobody:
    # acceptable for the embedded stack; production rotates its keys file.
    path = ctx.settings.api_keys_file
    for key in keys:
        if path is not None:
            revoke_key(path, key)
    return len(keys) >= BATCH


def worker(ctx) -> None:
    guarded_loop("web", "session expiry", lambda: step(ctx), ctx.stopping, stalls=ctx.stalls, idle_s=30.0)


worker.__name__ = "session_expiry"
