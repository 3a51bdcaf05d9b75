"""API keys with roles, shared by every service's HTTP API.

Keys come from SALESBUS_API_KEYS (JSON) or from the file SALESBUS_API_KEYS_FILE (re-read when
it changes; `salesbus key`, the embedded stack, the web service and tests write it). Each key
maps to a principal: a role and the subject it acts for (the customer id of a customer key, the
salesperson id, ...), and may carry when it was created, when it expires and when it was revoked;
an expired or revoked key is refused with 401 saying so. Entries are named by the key itself
(older files, hand-written ones) or by `sha256:<hex digest>` (what `issue_key` writes, so the file
holds no usable key). Only SHA-256 digests are compared, in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, field_validator

Role = Literal["customer", "operator", "warehouse", "salesperson", "analyst"]
#: every role, in the order `salesbus key` and the docs list them; analysts read the analytics
#: service (and nothing else), operators may too
ROLES: tuple[str, ...] = Role.__args__
#: what a key file entry is named by when it holds only the key's digest (keys issued since
#: `salesbus key issue` existed): the file then gives nobody a usable key
DIGEST_PREFIX = "sha256:"


class Principal(BaseModel):
    role: Role
    subject: str
    email: str | None = None  # a salesperson's mailbox for reminders

    def can_act_for_customer(self, customer_id: str) -> bool:
        """Customers act only for themselves; staff roles act for any customer."""
        return self.role != "customer" or self.subject == customer_id


class KeyEntry(BaseModel):
    """One key file entry: who the key acts for, and its life (all optional for older entries)."""
    role: Role
    subject: str
    email: str | None = None
    created: datetime | None = None
    expires: datetime | None = None
    revoked: datetime | None = None
    revoked_reason: str | None = None

    @field_validator("created", "expires", "revoked")
    @classmethod
    def _aware(cls, at: datetime | None) -> datetime | None:
        # a hand-written file may give a time without an offset: UTC, not a crash at comparison
        return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at

    @property
    def principal(self) -> Principal:
        return Principal(role=self.role, subject=self.subject, email=self.email)

    def refusal(self, key_id: str, now: datetime) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked is not None:
            why = f": {self.revoked_reason}" if self.revoked_reason else ""
            return f"API key {key_id} was revoked at {self.revoked.isoformat()}{why}"
        if self.expires is not None and now >= self.expires:
            return f"API key {key_id} expired at {self.expires.isoformat()}"
        return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(digest: bytes) -> str:
    """A key's public name (list, revoke, 401 answers): the first 12 hex digits of its digest."""
    return digest.hex()[:12]


def key_id_of(key: str) -> str:
    return key_id(_digest(key))


def _entry_digest(name: str) -> bytes:
    """The digest a key file entry stands for: its own name when stored as a digest, else the
    digest of the plain key (entries written before digests were stored)."""
    if name.startswith(DIGEST_PREFIX):
        return bytes.fromhex(name[len(DIGEST_PREFIX):])
    return _digest(name)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class KeyRing:
    """The keys a service accepts. The file is re-read whenever its mtime changes (checked at
    every lookup), so keys issued, revoked or expired with `salesbus key` take effect at once,
    without restarting anything; expiry is compared with the clock at every lookup."""

    def __init__(self, inline: str | None = None, path: Path | None = None):
        self.inline, self.path = inline, path
        self._mtime: tuple[int, int, int] | None = None
        self._keys: dict[bytes, KeyEntry] = {}
        if inline:
            self._keys = self._parse(json.loads(inline))

    @classmethod
    def from_env(cls) -> "KeyRing":
        path = os.environ.get("SALESBUS_API_KEYS_FILE")
        return cls(os.environ.get("SALESBUS_API_KEYS"), Path(path) if path else None)

    @staticmethod
    def _parse(raw: dict) -> dict[bytes, KeyEntry]:
        return {_entry_digest(k): KeyEntry.model_validate(v) for k, v in raw.items()}

    def _refresh(self) -> None:
        if not self.path or not self.path.exists():
            return
        st = self.path.stat()
        # mtime alone misses a change within the same clock tick (file times are coarse: a revoke
        # right after an issue kept the old file); every change is an os.replace (new inode) and
        # revoking or adding changes the size
        mtime = (st.st_mtime_ns, st.st_ino, st.st_size)
        if mtime != self._mtime:
            keys = self._parse(json.loads(self.path.read_text()))
            if self.inline:
                keys.update(self._parse(json.loads(self.inline)))
            self._keys, self._mtime = keys, mtime

    def check(self, key: str, now: datetime | None = None) -> tuple[Principal | None, str]:
        """(the key's principal, "") or (None, why it is refused)."""
        self._refresh()
        wanted = _digest(key)
        for digest, entry in self._keys.items():
            if hmac.compare_digest(digest, wanted):
                why = entry.refusal(key_id(digest), now or _now())
                return (None, why) if why else (entry.principal, "")
        return None, "unknown API key"

    def lookup(self, key: str) -> Principal | None:
        return self.check(key)[0]


def issue_key(path: Path, role: Role, subject: str, email: str | None = None,
              expires: datetime | None = None) -> str:
    """Add a new random key to a keys file (embedded stack, demo, tests and the web service's
    sessions). Only its digest is stored: the key itself is returned once, here."""
    key = f"sb_{role[:4]}_{secrets.token_urlsafe(24)}"
    entry = KeyEntry(role=role, subject=subject, email=email, created=_now().replace(microsecond=0),
                     expires=expires)
    name = DIGEST_PREFIX + _digest(key).hex()
    _change_keys(path, lambda raw: raw.__setitem__(name, entry.model_dump(mode="json", exclude_none=True)))
    return key


def revoke_key(path: Path, key: str) -> None:
    """Remove a key from a keys file (the web service at sign-out and session expiry)."""
    def change(raw):
        raw.pop(key, None)
        raw.pop(DIGEST_PREFIX + _digest(key).hex(), None)
    _change_keys(path, change)


def list_keys(path: Path) -> list[tuple[str, KeyEntry]]:
    """(id, entry) for every key in a keys file, oldest first (entries without a date first)."""
    raw = json.loads(path.read_text()) if path.exists() else {}
    found = [(key_id(_entry_digest(name)), KeyEntry.model_validate(v)) for name, v in raw.items()]
    return sorted(found, key=lambda t: (t[1].created or datetime.min.replace(tzinfo=timezone.utc), t[0]))


class UnknownKey(LookupError):
    pass


def revoke_by_id(path: Path, wanted: str, reason: str | None = None) -> KeyEntry:
    """Mark the key named `wanted` (its id) revoked; it stays listed. Revoking twice keeps the first time."""
    done: list[KeyEntry] = []

    def change(raw):
        for name, value in raw.items():
            if key_id(_entry_digest(name)) == wanted:
                entry = KeyEntry.model_validate(value)
                if entry.revoked is None:
                    entry.revoked, entry.revoked_reason = _now().replace(microsecond=0), reason
                raw[name] = entry.model_dump(mode="json", exclude_none=True)
                done.append(entry)
                return
    _change_keys(path, change)
    if not done:
        raise UnknownKey(f"no key with id {wanted!r} in {path} (`salesbus key list` shows them)")
    return done[0]


def _change_keys(path: Path, change) -> None:
    # The web service issues and revokes keys from several threads (and replicas on one host):
    # a lock file serialises the read-modify-write, so no change overwrites another.
    import fcntl
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        raw = json.loads(path.read_text()) if path.exists() else {}
        change(raw)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


# The two ways to present a key. As security schemes they are in every OpenAPI document, on every
# operation that needs a key, with the roles it accepts (OpenAPI 3.1 allows role names there).
bearer_key = HTTPBearer(auto_error=False, scheme_name="apiKeyBearer",
                        description="API key as `Authorization: Bearer <key>` (`salesbus key issue ROLE SUBJECT`)")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader",
                          description="the same API key in an `X-API-Key` header")


def authenticate(request: Request, bearer: HTTPAuthorizationCredentials | None = Security(bearer_key),
                 header: str | None = Security(header_key)) -> Principal:
    ring: KeyRing = request.app.state.keyring
    key = bearer.credentials if bearer is not None else header
    principal, why = ring.check(key) if key else (None, "missing API key")
    if principal is None:
        raise HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})
    return principal


def require(*roles: Role):
    """FastAPI dependency: the caller must hold one of `roles`."""
    def check(principal: Principal = Security(authenticate, scopes=list(roles))) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"this endpoint needs the role {' or '.join(roles)}")
        return principal
    return check
