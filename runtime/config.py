"""Configuration from SALESBUS_* environment variables (pydantic-settings).

When neither SALESBUS_KAFKA_BOOTSTRAP nor SALESBUS_DATABASE_URL is set, the embedded stack
(Tansu broker + PostgreSQL from wheels, started by `salesbus up`) is used: its addresses are
found through runtime/stackfile.py (./.salesbus/stack.json, SALESBUS_STACK_FILE, or the per-user
state file `salesbus up` writes).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("cart", "payments", "orders", "notifications", "crm", "scheduler", "web")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESBUS_", extra="ignore")

    kafka_bootstrap: str | None = None
    # passed through to librdkafka: SASL/TLS for a managed cluster
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    # Apache Kafka's default (45 s): a member lost for that long has its partitions reassigned.
    # The embedded stack gives Tansu 6000 (runtime/embedded.py TANSU_SETTINGS): Tansu finishes a
    # group join after about half the session timeout.
    kafka_session_timeout_ms: int = 45000
    # How long the broker may hold a consumer's fetch when it has nothing new. Apache Kafka answers a
    # held fetch as soon as a record arrives, so there the wait costs no latency and 500 (Kafka's own
    # default) means 25x fewer empty fetches per idle consumer than 20. Tansu 0.6 does not: it
    # polls its storage, sleeps the whole remaining wait (halves of it from 250 ms up) and polls
    # again, so every hop waits up to this long for a record that arrived meanwhile. The embedded
    # stack therefore gives Tansu 20 (runtime/embedded.py TANSU_SETTINGS; measured there: 5 idle
    # consumers cost Tansu 12% of a core at 20 ms, 3.6% at 100, 0.9% at 500, while one hop's p50
    # latency went 7 -> 22 -> 118 ms).
    kafka_fetch_wait_max_ms: int = 500
    #: partitions per business topic at creation: a consumer group scales to this many members
    #: (12: 2, 3, 4, 6 or 12 replicas share them evenly); the embedded stack uses 3
    topic_partitions: int = 12
    topic_replication: int = 1

    # A server URL; each service uses its own database on it (named after the service)
    # unless SALESBUS_<SERVICE>_DATABASE_URL names one explicitly.
    database_url: str | None = None
    db_pool_max: int = 4
    #: one service's own database when it lives elsewhere (another server, other credentials);
    #: wins over database_url for that service
    cart_database_url: str | None = None
    payments_database_url: str | None = None
    orders_database_url: str | None = None
    notifications_database_url: str | None = None
    crm_database_url: str | None = None
    scheduler_database_url: str | None = None
    web_database_url: str | None = None

    #: currencies the business sells in (ISO 4217); orders in others are declined
    currencies: str = "EUR,USD,GBP,PLN"

    #: most records handled in one transaction
    batch_size: int = 500
    #: how long a consumer waits for the first record of a batch before checking in again
    batch_timeout_s: float = 0.2
    retry_backoff_max_s: float = 5.0
    #: a record failing for now (gateway timeout, lock) is parked and retried with backoff for this
    #: long, then dead-lettered so its key moves on; later records of its key wait behind it
    retry_window_s: float = 86400.0
    #: longest pause between two tries of a parked record
    retry_backoff_cap_s: float = 300.0
    #: inbox rows are kept this long (30 days: longer than Kafka's default 7-day retention, so
    #: any redelivery or group reset within the topic's history is still recognised)
    inbox_retention_s: float = 30 * 86400.0
    #: /readyz reports "degraded" once a loop has been retrying the same work for this long
    stall_degraded_after_s: float = 30.0
    #: an email the relay keeps refusing for now (connection refused, timeouts, 4xx) is retried
    #: with backoff for this long from its first failure, then marked `failed`: 3 days outlasts a
    #: relay outage over a long weekend, and an order or shipping confirmation later than that is
    #: no longer news to the customer (who has called by then); the relay we hand to retries on its own
    email_retry_window_s: float = 3 * 86400.0
    #: most emails the notifications sender delivers in one database transaction (one commit for
    #: them all: a commit per email was the sender's limit). It is also how many emails a crash
    #: between the relay's acceptance and that commit can send twice, each with the same Message-ID
    #: so receivers drop the copy (services/notifications/sender.py); 1 sends at most one twice.
    email_batch_size: int = Field(default=10, ge=1, le=1000)
    #: SMTP sessions the notifications sender keeps open and uses at once for a batch: each email
    #: is four round trips to the relay (aiosmtplib does not pipeline), so one session mostly waits;
    #: 4 keeps a batch of 10 in flight in three turns (bench/sender_bench.py: emails/s by sessions)
    email_sessions: int = Field(default=4, ge=1, le=32)
    #: an event parked until what it needs arrives (an OrderShipped before its OrderPlaced) waits
    #: this long in real time, then is moved to the service's expired table: 7 days is Kafka's
    #: default retention, so what has not arrived by then is no longer on the topic to come
    parked_event_expiry_s: float = 7 * 86400.0

    #: address the metrics/health and HTTP ports listen on: loopback on a developer's machine; a
    #: container sets 0.0.0.0 (deploy/), or the kubelet's probes and Prometheus cannot reach them
    bind_host: str = "127.0.0.1"
    #: payments' overdue handling: reminder steps in days past due (each sent once per invoice),
    #: how many days overdue put an account on hold, and the customer's local hour it runs at
    #: (a morning, so the reminder is read that working day)
    overdue_reminder_days: str = "3,14,30"
    overdue_hold_after_days: int = 30
    overdue_local_hour: int = Field(default=8, ge=0, le=23)

    data_dir: Path = Path(".salesbus")
    #: a running stack's stack.json (or its data dir), as `salesbus up` prints it: the CLI then
    #: finds that stack from any folder (runtime/stackfile.py; else ./.salesbus, else the per-user
    #: state file `salesbus up` writes)
    stack_file: Path | None = None
    metrics_port: int | None = None   # per process; `salesbus up` assigns one per service
    http_port: int | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "orders@salesbus.example"

    #: JSON: {"<api key>": {"role": "customer", "subject": "<customer id>"}, ...}
    api_keys: SecretStr | None = None
    #: seconds a simulated distribution centre waits before shipping a confirmed order; <0 disables
    dc_ship_delay_s: float = -1.0
    #: the card gateway adapter (services/payments/<name>_gateway.py): "simulated" is the embedded
    #: default with documented test tokens; "stripe" charges through Stripe's PaymentIntents
    card_gateway: str = "simulated"
    #: Stripe's secret key when card_gateway is "stripe" (a secret: from the secret store)
    card_gateway_stripe_api_key: SecretStr | None = None
    #: the controllable clock's file (the demo moves business time forward through it); unset,
    #: the wall clock (runtime/clock.py)
    clock_file: Path | None = None

    #: the keys file (also read by runtime.auth.KeyRing.from_env): the web service adds a key per
    #: signed-in session to it, so the services' own APIs decide what each person may see
    api_keys_file: Path | None = None
    #: JSON {"cart": "http://host:port", ...}: where the web service finds the services' APIs;
    #: unset, it reads the ports `salesbus up` wrote to <data dir>/stack.json
    service_urls: str | None = None
    #: the address people open (https://shop.example.com): sign-in links point there. Unset, links
    #: use the request's own address, which is allowed only on loopback (a Host header is forgeable)
    web_public_url: str | None = None
    #: an emailed sign-in link works once, for this long (15 min: long enough to reach the mailbox)
    web_signin_link_ttl_s: float = 900.0
    #: sign-in requests from one client address per 15 minutes (also for unknown addresses, so
    #: guessing who may sign in is slow); 60 leaves room for an office behind one NAT at 9 am
    web_signin_per_client: int = 60
    #: a signed-in session ends this long after sign-in (a working day); its API key is revoked
    web_session_ttl_s: float = 8 * 3600.0

    #: the simulated card gateway's state file (its idempotency memory, shared by every payments
    #: replica on the host); unset, <data dir>/card-gateway.sqlite
    card_gateway_state: Path | None = None
    #: another Stripe API address (stripe-mock's http://127.0.0.1:12111 in tests); unset, Stripe's
    card_gateway_stripe_api_base: str | None = None

    #: the CRM's task timing: a follow-up call this many days after an order ships (the goods
    #: have arrived and been unpacked), a salesperson's reminder this many hours before a task is
    #: due, and a reorder call this many days before the customer's next order is expected
    crm_follow_up_days: float = 3.0
    crm_reminder_lead_hours: float = 24.0
    crm_reorder_lead_days: float = 3.0
    #: who owns a profile the CRM learns from a customer's first order until a salesperson
    #: completes it (PUT): a sales desk that triages new customers, and the mailbox its reminders go to
    crm_new_customer_salesperson: str = Field(default="sales-desk", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,63}$")
    crm_new_customer_salesperson_email: str = "sales@salesbus.example"

    #: the analytics faust app's id: its consumer group and changelog prefix (a new id rebuilds
    #: its tables from the topics). Unset, `python -m services.analytics` is "salesbus-analytics"
    #: (deploy/) and `salesbus status` looks for "analytics", the id `salesbus up` starts it with
    analytics_app_id: str | None = None
    #: analytics' producer batch: 1 on Tansu, whose ListOffsets answers with the last batch's base
    #: offset + 1 (table recovery would stop short of a changelog's tail); may be raised on Kafka
    analytics_batch: int = Field(default=1, ge=1)

    #: the service APIs the operator commands (`salesbus ship`, `salesbus record-payment`) call;
    #: unset, the addresses `salesbus up` recorded in the data directory
    orders_url: str | None = None
    payments_url: str | None = None
    #: the API key those commands send (an operator's or warehouse's; a secret)
    api_key: SecretStr | None = None

    #: the runtime's own fault tests only: the process dies (like kill -9) the first time it
    #: reaches this crash point (runtime/faults.py)
    crash_at: str | None = None

    @field_validator("crm_follow_up_days", "crm_reminder_lead_hours", "crm_reorder_lead_days")
    @classmethod
    def _not_negative(cls, value: float, info: ValidationInfo) -> float:
        # a bad value stops the service at start, not each event later
        if value < 0:
            raise ValueError(f"SALESBUS_{info.field_name.upper()} must not be negative, got {value!r}")
        return value

    def supported_currencies(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.currencies.split(",") if c.strip())

    def embedded(self) -> dict[str, Any] | None:
        from runtime.stackfile import find
        return find(self.stack_file, self.data_dir, "data_dir" in self.model_fields_set)

    def bootstrap(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        stack = self.embedded()
        if not stack:
            from runtime.stackfile import where_to_look
            raise RuntimeError(f"no broker: set SALESBUS_KAFKA_BOOTSTRAP or {where_to_look()}")
        return stack["kafka_bootstrap"]

    def database_for(self, service: str) -> str:
        explicit = getattr(self, f"{service}_database_url", None)
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
