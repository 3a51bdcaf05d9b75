"""Per-service PostgreSQL stores: database creation, plain-SQL migrations, connection pools."""
from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from runtime.config import with_dbname

log = logging.getLogger(__name__)
RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"
# Faults that pass: the server restarted, a backend was terminated, the network blipped,
# or two transactions collided. The runtime retries these; everything else is a real error.
TRANSIENT_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError,
                       psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def ensure_database(database_url: str) -> None:
    """Create the service's database on its server if it is not there yet."""
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    name = params.get("dbname")
    with psycopg.connect(with_dbname(database_url, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process of the same service won the race


def migrate(database_url: str, service_migrations: Path | None) -> list[str]:
    """Apply runtime then service migrations not yet recorded; returns the names applied.

    An advisory lock serialises replicas starting at once.
    """
    ensure_database(database_url)
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                              name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            files = sorted(RUNTIME_MIGRATIONS.glob("*.sql"))
            if service_migrations and service_migrations.exists():
                files += sorted(service_migrations.glob("*.sql"))
            for path in files:
                name = f"{path.parent.parent.name}/{path.name}"
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
                log.info("migration applied: %s", name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(4242)")
    return applied


def make_pool(database_url: str, *, max_size: int = 4, name: str = "salesbus") -> ConnectionPool:
    pool = ConnectionPool(database_url, min_size=1, max_size=max_size, name=name, open=False, timeout=5,
                          kwargs={"row_factory": dict_row}, check=ConnectionPool.check_connection,
                          reconnect_timeout=3600)
    pool.open(wait=False)
    return pool
