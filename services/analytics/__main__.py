"""``python -m services.analytics``: run the analytics worker (see services/analytics/__init__.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from runtime.config import Settings
from services.analytics.app import DEFAULT_APP_ID, run


def main(argv: list[str] | None = None) -> None:
    cfg = Settings()
    parser = argparse.ArgumentParser(prog="python -m services.analytics", description=__doc__)
    parser.add_argument("--broker", help="bootstrap host:port (default: SALESBUS_KAFKA_BOOTSTRAP or the embedded stack)")
    parser.add_argument("--web-port", type=int, default=cfg.http_port if cfg.http_port is not None else 6066)
    parser.add_argument("--app-id", default=cfg.analytics_app_id or DEFAULT_APP_ID,
                        help="consumer group and changelog prefix; a new one rebuilds from the topics")
    parser.add_argument("--data-dir", type=Path, default=cfg.data_dir / "analytics")
    parser.add_argument("--metrics-port", type=int, default=cfg.metrics_port,
                        help="also serve /metrics, /healthz, /readyz here (as every service does)")
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    run(args.broker or cfg.bootstrap(), web_port=args.web_port, app_id=args.app_id, data_dir=args.data_dir,
        partitions=cfg.topic_partitions, metrics_port=args.metrics_port, loglevel=args.loglevel,
        producer_batch=cfg.analytics_batch)


if __name__ == "__main__":
    main()
