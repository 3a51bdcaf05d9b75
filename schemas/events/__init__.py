"""One module per domain; `schemas` re-exports every event."""
