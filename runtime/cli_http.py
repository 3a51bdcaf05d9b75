"""What the services' operator commands (`salesbus ship`, `salesbus record-payment`) share: one
POST to a service's API with the caller's key, and its failure said in one line (exit code 1)."""
from __future__ import annotations

import httpx
import typer


def post_as(service: str, base: str, path: str, body: dict, key: str) -> httpx.Response:
    """The answer to POST base+path (2xx); anything else is reported and ends the command."""
    try:
        resp = httpx.post(f"{base.rstrip('/')}{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                          timeout=30)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the {service} service at {base}: {exc}", err=True)
        raise typer.Exit(1)
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        typer.echo(f"error: {resp.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return resp
