"""API keys with roles, shared by every service's HTTP API.

Keys come from SALESBUS_API_KEYS (JSON) or from the file SALESBUS_API_KEYS_FILE (re-read when
it changes; the embedded stack and tests write it). Each key maps to a principal: a role and
the subject it acts for (the customer id of a customer key, the salesperson id, ...).
Only SHA-256 digests are compared, in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Literal

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel

Role = Literal["customer", "operator", "warehouse", "salesperson"]


class Principal(BaseModel):
    role: Role
    subject: str
    email: str | None = None  # a salesperson's mailbox for reminders

    def can_act_for_customer(self, customer_id: str) -> bool:
        """Customers act only for themselves; staff roles act for any customer."""
        return self.role != "customer" or self.subject == customer_id


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, inline: str | None = None, path: Path | None = None):
        self.inline, self.path = inline, path
        self._mtime: int | None = None
        self._keys: dict[bytes, Principal] = {}
        if inline:
            self._keys = self._parse(json.loads(inline))

    @classmethod
    def from_env(cls) -> "KeyRing":
        path = os.environ.get("SALESBUS_API_KEYS_FILE")
        return cls(os.environ.get("SALESBUS_API_KEYS"), Path(path) if path else None)

    @staticmethod
    def _parse(raw: dict) -> dict[bytes, Principal]:
        return {_digest(k): Principal.model_validate(v) for k, v in raw.items()}

    def _refresh(self) -> None:
        if not self.path or not self.path.exists():
            return
        mtime = self.path.stat().st_mtime_ns
        if mtime != self._mtime:
            keys = self._parse(json.loads(self.path.read_text()))
            if self.inline:
                keys.update(self._parse(json.loads(self.inline)))
            self._keys, self._mtime = keys, mtime

    def lookup(self, key: str) -> Principal | None:
        self._refresh()
        wanted = _digest(key)
        for digest, principal in self._keys.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        return None


def issue_key(path: Path, role: Role, subject: str, email: str | None = None) -> str:
    """Add a new random key to a keys file (embedded stack, demo and tests)."""
    key = f"sb_{role[:4]}_{secrets.token_urlsafe(24)}"
    raw = json.loads(path.read_text()) if path.exists() else {}
    raw[key] = {"role": role, "subject": subject, "email": email}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=1))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def authenticate(request: Request) -> Principal:
    ring: KeyRing = request.app.state.keyring
    header = request.headers.get("authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    principal = ring.lookup(key) if key else None
    if principal is None:
        raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require(*roles: Role):
    """FastAPI dependency: the caller must hold one of `roles`."""
    def check(principal: Principal = Depends(authenticate)) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"this endpoint needs the role {' or '.join(roles)}")
        return principal
    return check
