"""Demo flow: the people-facing pages. The operator lets four people sign in (a buyer of Adriatic
Hotels, their salesperson Ana, a warehouse clerk, an operator); each asks for a sign-in link,
which arrives by email, and signs in with it. With Chromium installed, the buyer's storefront,
an order's timeline and Ana's console are saved as screenshots."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row
from rich.table import Table

from demo.context import DemoContext
from services.web import store

CHROMIUM = Path("/usr/bin/chromium")
PEOPLE = [
    ("ivana.horvat@adriatic-hotels.example", "Ivana Horvat", "customer", "adriatic-hotels", "hr", "Europe/Zagreb"),
    ("ana.kovac@salesbus.example", "Ana Kovač", "salesperson", "ana.kovac", "hr", "Europe/Zagreb"),
    ("dc-zagreb@salesbus.example", "Goran (DC Zagreb)", "warehouse", "dc-zagreb", "hr", "Europe/Zagreb"),
    ("ops@salesbus.example", "Olga (operations)", "operator", "olga", "en", "Europe/Warsaw"),
]
LINK = re.compile(r"(http://\S+/signin/[A-Za-z0-9_\-]+)")


def _links(ctx: DemoContext, email: str) -> list[str]:
    found = []
    for msg in ctx.mail():
        body = msg.get_body(("plain",)) if msg["To"] == email else None
        if body is not None:
            found += LINK.findall(body.get_content())
    return found


def request_link(ctx: DemoContext, base: str, email: str) -> str | None:
    before = len(_links(ctx, email))
    with httpx.Client(base_url=base, timeout=30) as client:
        form = client.get("/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        client.post("/signin", data={"email": email, "csrf_token": csrf})
    if not ctx.wait_for(lambda: len(_links(ctx, email)) > before, timeout=20, what=f"the sign-in email to {email}"):
        return None
    return _links(ctx, email)[-1]


def sign_in_http(base: str, link: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=30)
    path = "/signin/" + link.rsplit("/", 1)[1]
    page = client.get(path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = client.post(path, data={"csrf_token": csrf})
    return client, done.headers.get("location", "?")


def screenshots(ctx: DemoContext, base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            for email, shots in ((PEOPLE[0][0], ["/shop", "/orders"]), (PEOPLE[1][0], ["/console"])):
                link = request_link(ctx, base, email)
                if link is None:
                    continue
                page = browser.new_page()
                page.goto(base + "/signin/" + link.rsplit("/", 1)[1])
                page.locator("main button[type=submit]").click()
                page.wait_for_load_state("load")
                for path in shots:
                    page.goto(base + path)
                    if path == "/orders":  # the newest order's timeline
                        first = page.locator("main table a").first
                        if not first.count():
                            continue
                        first.click()
                        path = "/order"
                    target = out / f"{path.strip('/').replace('/', '-')}.png"
                    page.screenshot(path=str(target), full_page=True)
                    saved.append(target)
                page.close()
        finally:
            browser.close()
    return saved


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]6. People sign in to the web pages")
    base = f"http://127.0.0.1:{ctx.supervisor.port('web')}"
    with psycopg.connect(ctx.cfg.database_for("web"), row_factory=dict_row) as conn:
        for email, name, role, subject, language, zone in PEOPLE:
            store.upsert_person(conn, email=email, name=name, role=role, subject=subject, language=language,
                                time_zone=zone, active=True, now=datetime.now(timezone.utc))
    table = Table("person", "role", "sign-in link (emailed, used once)", "lands on")
    table.columns[2].overflow = "fold"  # the whole link, wrapped, never cut
    for email, name, role, subject, *_ in PEOPLE:
        link = request_link(ctx, base, email)
        if link is None:
            continue
        client, landing = sign_in_http(base, link)
        try:
            page = client.get(landing)
        finally:
            client.close()
        ctx.check(page.status_code == 200, f"{name} signed in and opened {landing}")
        table.add_row(f"{name} <{email}>", f"{role} {subject}", link, f"{landing} ({page.status_code})")
    ctx.console.print(table)
    ctx.console.print(f"web pages: {base}/  (links work once, for 15 minutes; ask for a new one on {base}/signin)")
    if not CHROMIUM.exists():
        ctx.console.print("screenshots skipped: Chromium is not installed at /usr/bin/chromium")
        return
    try:
        import playwright  # noqa: F401
    except ImportError:
        ctx.console.print("screenshots skipped: Playwright is not installed")
        return
    out = ctx.stack.data_dir / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    saved = screenshots(ctx, base, out)
    ctx.check(len(saved) == 3, "screenshots of the storefront, an order timeline and the sales console")
    for path in saved:
        ctx.console.print(f"screenshot: {path}")
