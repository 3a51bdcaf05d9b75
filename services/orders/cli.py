"""`salesbus ship`: a distribution centre reports that an order left, through the orders API.

The warehouse API key comes from SALESBUS_API_KEY. The orders URL is --url, else
SALESBUS_ORDERS_URL, else the one `salesbus up` recorded in the data directory.
"""
from __future__ import annotations

from typing import Optional

import typer

from runtime.cli_http import post_as
from runtime.config import Settings

app = typer.Typer(add_completion=False, help="Distribution-centre commands of the orders service.")


def orders_url(cfg: Settings | None = None) -> str | None:
    cfg = cfg or Settings()
    if cfg.orders_url:
        return cfg.orders_url
    info = cfg.embedded() or {}
    port = (info.get("services") or {}).get("orders", {}).get("http")
    return f"http://127.0.0.1:{port}" if port else None


@app.command()
def ship(order_id: str = typer.Argument(..., help="the order that left the distribution centre"),
         carrier: str = typer.Option(..., help="carrier that took the parcel, e.g. 'DHL Freight'"),
         tracking: str = typer.Option(..., help="the carrier's tracking number"),
         centre: str = typer.Option(..., help="distribution centre that filled the order, e.g. 'DC Zagreb'"),
         url: Optional[str] = typer.Option(None, help="orders service base URL")):
    """Mark an order shipped (the orders service then publishes OrderShipped)."""
    cfg = Settings()
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    if not key:
        typer.echo("error: set SALESBUS_API_KEY to a warehouse API key", err=True)
        raise typer.Exit(2)
    base = url or orders_url(cfg)
    if not base:
        typer.echo("error: no orders URL: pass --url or set SALESBUS_ORDERS_URL (or start `salesbus up`)", err=True)
        raise typer.Exit(2)
    resp = post_as("orders", base, f"/orders/{order_id}/shipments", {"carrier": carrier, "tracking_number": tracking, "distribution_centre": centre}, key)
    order = resp.json()
    again = " (already recorded)" if resp.status_code == 200 else ""
    typer.echo(f"order {order['order_id']} ({order['confirmation_number']}) shipped{again}: "
               f"{carrier} {tracking} from {centre}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
