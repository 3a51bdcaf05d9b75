"""The shared runtime every service stands on: config, stores, bus (inbox, outbox, DLQ), metrics, CLI."""
