"""The web service on the test session's real stack: the services it calls started by the harness,
the web service itself started like `salesbus run web` but pointed at the harness's ports, and the
people of the journey (two customers' buyers, a salesperson, an operator, a warehouse clerk)."""
from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import psycopg
from psycopg.rows import dict_row

from runtime.embedded import free_port, read_mail, wait_for_port
from runtime.service import ServiceProcess, load_service
from services.web import store

CALLED = ("cart", "payments", "orders", "notifications", "crm", "scheduler")
LINK = re.compile(r"(http://\S+/signin/[A-Za-z0-9_\-]+)")


@dataclass
class WebStack:
    url: str
    proc: ServiceProcess
    maildir: str
    people: dict[str, dict] = field(default_factory=dict)

    def add_person(self, key: str, *, email: str, name: str, role: str, subject: str, language: str = "en",
                   time_zone: str = "Europe/Warsaw") -> dict:
        with psycopg.connect(self.proc.database_url, row_factory=dict_row) as conn:
            row = store.upsert_person(conn, email=email, name=name, role=role, subject=subject, language=language,
                                      time_zone=time_zone, active=True, now=datetime.now(timezone.utc))
        self.people[key] = row
        return row

    def links_for(self, email: str) -> list[str]:
        found = []
        for msg in read_mail(self.maildir):
            if msg["To"] != email:
                continue
            body = msg.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            found.extend(LINK.findall(text))
        return found

    def wait_link(self, email: str, already: int, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = self.links_for(email)
            if len(links) > already:
                return links[-1]
            time.sleep(0.1)
        raise AssertionError(f"no sign-in email reached {email}")


def start_web(harness, cfg, stack) -> WebStack:
    harness.start(*CALLED)
    wcfg = cfg.model_copy(update={"api_keys_file": harness.keys_file,
                                  "service_urls": __import__("json").dumps(harness.urls),
                                  "web_public_url": None})
    proc = ServiceProcess(load_service("web"), wcfg, harness.clock)
    ctx = proc.start()
    import uvicorn
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(proc.service.http_app(ctx), host="127.0.0.1", port=port,
                                           log_level="warning"))
    server.install_signal_handlers = lambda: None
    threading.Thread(target=server.run, daemon=True, name="web-http").start()
    wait_for_port(port, 15, "web pages")
    name = f"web-{uuid.uuid4().hex[:6]}"
    harness.servers[name] = server
    harness.procs[name] = proc
    return WebStack(f"http://127.0.0.1:{port}", proc, str(stack.mail.maildir))


def seed_customer(harness, customer_id: str, salesperson_id: str, salesperson_email: str,
                  credit_limit: str = "5000.00") -> None:
    """A customer as the operator sets it up: a supplier account and a CRM profile."""
    with harness.client("payments", "operator", "web-test-operator") as ops:
        ops.put(f"/accounts/{customer_id}", json={"credit_limit": credit_limit, "currency": "EUR",
                                                  "payment_terms_days": 30}).raise_for_status()
    with harness.client("crm", "operator", "web-test-operator") as crm:
        response = crm.post("/customers", json={
            "customer_id": customer_id, "name": f"Hotel {customer_id}", "segment": "hospitality", "language": "en",
            "time_zone": "Europe/Warsaw",
            "salesperson": {"id": salesperson_id, "email": salesperson_email, "time_zone": "Europe/Warsaw"},
            "primary_contact": {"name": "Ana Buyer", "role": "purchasing"}})
        assert response.status_code in (201, 409), response.text


def sign_in(web: WebStack, client: httpx.Client, email: str) -> httpx.Client:
    """Signs `client` (a browser-like httpx client with cookies) in through the emailed link."""
    before = len(web.links_for(email))
    form = client.get("/signin")
    csrf = csrf_of(form.text)
    assert client.post("/signin", data={"email": email, "csrf_token": csrf}).status_code == 303
    link = web.wait_link(email, before)
    token_path = link.split(web.url, 1)[-1] if link.startswith(web.url) else "/signin/" + link.rsplit("/", 1)[-1]
    page = client.get(token_path)
    assert page.status_code == 200, page.text
    done = client.post(token_path, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 303, done.text
    return client


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page has no CSRF token"
    return m.group(1)
