"""Configuration from SALESBUS_* environment variables (pydantic-settings).

When neither SALESBUS_KAFKA_BOOTSTRAP nor SALESBUS_DATABASE_URL is set, the embedded stack
(Tansu broker + PostgreSQL from wheels, started by `salesbus up`) is used: its addresses are
read from .salesbus/stack.json.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("cart", "payments", "orders", "notifications", "crm", "scheduler")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESBUS_", extra="ignore")

    kafka_bootstrap: str | None = None
    # passed through to librdkafka: SASL/TLS for a managed cluster
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    # Tansu (and small clusters) finish a group join after about half the session timeout,
    # so a short one keeps start-up and rebalances quick; raise it for long GC pauses.
    kafka_session_timeout_ms: int = 6000
    topic_partitions: int = 3
    topic_replication: int = 1

    # A server URL; each service uses its own database on it (named after the service)
    # unless SALESBUS_<SERVICE>_DATABASE_URL names one explicitly.
    database_url: str | None = None
    db_pool_max: int = 4

    #: currencies the business sells in (ISO 4217); orders in others are declined
    currencies: str = "EUR,USD,GBP,PLN"

    #: most records handled in one transaction
    batch_size: int = 500
    #: how long a consumer waits for the first record of a batch before checking in again
    batch_timeout_s: float = 0.2
    retry_backoff_max_s: float = 5.0

    data_dir: Path = Path(".salesbus")
    metrics_port: int | None = None   # per process; `salesbus up` assigns one per service
    http_port: int | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "orders@salesbus.example"

    #: JSON: {"<api key>": {"role": "customer", "subject": "<customer id>"}, ...}
    api_keys: SecretStr | None = None
    #: seconds a simulated distribution centre waits before shipping a confirmed order; <0 disables
    dc_ship_delay_s: float = -1.0
    #: speed-up of the controllable clock (demo); 0 means wall time
    clock_file: Path | None = None

    def supported_currencies(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.currencies.split(",") if c.strip())

    def embedded(self) -> dict[str, Any] | None:
        path = self.data_dir / "stack.json"
        return json.loads(path.read_text()) if path.exists() else None

    def bootstrap(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        stack = self.embedded()
        if not stack:
            raise RuntimeError("no broker: set SALESBUS_KAFKA_BOOTSTRAP or start the embedded stack with `salesbus up`")
        return stack["kafka_bootstrap"]

    def database_for(self, service: str) -> str:
        import os
        explicit = os.environ.get(f"SALESBUS_{service.upper()}_DATABASE_URL")
        if explicit:
            return explicit
        server = self.database_url or (self.embedded() or {}).get("database_url")
        if not server:
            raise RuntimeError("no database: set SALESBUS_DATABASE_URL or start the embedded stack with `salesbus up`")
        return with_dbname(server, service)

    def server_url(self) -> str:
        url = self.database_url or (self.embedded() or {}).get("database_url")
        if not url:
            raise RuntimeError("no database: set SALESBUS_DATABASE_URL or start the embedded stack with `salesbus up`")
        return url

    def kafka_common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap()}
        if self.kafka_security_protocol:
            conf["security.protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = self.kafka_ssl_ca_location
        return conf


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@lru_cache
def settings() -> Settings:
    return Settings()
