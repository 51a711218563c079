"""Bearer tokens mapped to roles, district scoping, and the audit log of every write.

Roles are ordered: `viewer` (the bureau: read) < `enforcement` (may acknowledge, annotate, close; optionally
limited to districts) < `admin`. No token → 401; a role that may not → 403. Without a token the API is
readable only when it listens on loopback and has no tokens configured (a developer's machine), or sets
`api.loopback_read` (the demo); anything more then asks for a token (401).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException, Request

from gshp.config import ApiSettings

__all__ = ["AuditLog", "Authenticator", "Principal", "Role"]

Role = Literal["viewer", "enforcement", "admin"]
_RANK: dict[str, int] = {"viewer": 0, "enforcement": 1, "admin": 2}

log = logging.getLogger("gshp.audit")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    districts: frozenset[str] | None = None  # None: every district

    def may(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def sees(self, district: str) -> bool:
        return self.districts is None or district in self.districts


ANONYMOUS = Principal("anonymous (loopback)", "viewer")
"""Who reads without a token where that is open (`ApiSettings.open_read`)."""


class Authenticator:
    def __init__(self, settings: ApiSettings) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        for t in settings.tokens:
            secret = t.token.get_secret_value()
            # a token's holder is named in the audit log by its name, else by a short digest — never the token
            name = t.name or f"{t.role}-{hashlib.sha256(secret.encode()).hexdigest()[:8]}"
            districts = frozenset(t.districts) if t.districts is not None else None
            self._tokens.append((secret.encode(), Principal(name, t.role, districts)))
        self.open_read = settings.open_read

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            given = token.strip().encode()
            for secret, principal in self._tokens:
                if hmac.compare_digest(given, secret):
                    return principal
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if self.open_read:
            return ANONYMOUS
        raise HTTPException(401, "a bearer token is required: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})

    def require(self, role: Role) -> Callable[[Request], Principal]:
        def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if not principal.may(role):
                if principal is ANONYMOUS:  # open read, no token given: ask for one (the board's login)
                    raise HTTPException(401, f"a bearer token of the {role} role is required: "
                                             "Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
                raise HTTPException(403, f"the {principal.role} role may not do this (needs {role})")
            return principal

        return dependency


class AuditLog:
    """Append-only JSON lines: who did what to which alert, and when."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, who: Principal, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        entry = {"at": datetime.now(UTC).isoformat(), "who": who.name, "role": who.role, "action": action,
                 "target": target, **({"detail": detail} if detail else {})}
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info("audit: %s", line)

    def entries(self, limit: int = 200) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self._lock:
            lines = self.path.read_text(encoding="utf-8").splitlines()[-limit:]
        return [json.loads(x) for x in lines]
