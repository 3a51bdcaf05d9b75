"""`salesbus ship`: a distribution centre reports that an order left, through the orders API.

The warehouse API key comes from SALESBUS_API_KEY. The orders URL is --url, else
SALESBUS_ORDERS_URL, else the one `salesbus up` recorded in the data directory.
"""
from __future__ import annotations

import os
from typing import Optional

import httpx
import typer

from runtime.config import Settings

app = typer.Typer(add_completion=False, help="Distribution-centre commands of the orders service.")


def orders_url() -> str | None:
    if os.environ.get("SALESBUS_ORDERS_URL"):
        return os.environ["SALESBUS_ORDERS_URL"]
    info = Settings().embedded() or {}
    port = (info.get("services") or {}).get("orders", {}).get("http")
    return f"http://127.0.0.1:{port}" if port else None


@app.command()
def ship(order_id: str = typer.Argument(..., help="the order that left the distribution centre"),
         carrier: str = typer.Option(..., help="carrier that took the parcel, e.g. 'DHL Freight'"),
         tracking: str = typer.Option(..., help="the carrier's tracking number"),
         centre: str = typer.Option(..., help="distribution centre that filled the order, e.g. 'DC Zagreb'"),
         url: Optional[str] = typer.Option(None, help="orders service base URL")):
    """Mark an order shipped (the orders service then publishes OrderShipped)."""
    key = os.environ.get("SALESBUS_API_KEY")
    if not key:
        typer.echo("error: set SALESBUS_API_KEY to a warehouse API key", err=True)
        raise typer.Exit(2)
    base = url or orders_url()
    if not base:
        typer.echo("error: no orders URL: pass --url or set SALESBUS_ORDERS_URL (or start `salesbus up`)", err=True)
        raise typer.Exit(2)
    try:
        resp = httpx.post(f"{base.rstrip('/')}/orders/{order_id}/shipments",
                          json={"carrier": carrier, "tracking_number": tracking, "distribution_centre": centre},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the orders service at {base}: {exc}", err=True)
        raise typer.Exit(1)
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        typer.echo(f"error: {resp.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    order = resp.json()
    again = " (already recorded)" if resp.status_code == 200 else ""
    typer.echo(f"order {order['order_id']} ({order['confirmation_number']}) shipped{again}: "
               f"{carrier} {tracking} from {centre}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
