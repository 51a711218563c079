"""Bearer tokens mapped to roles and district scoping (every write is recorded in `rules.audit`).

Roles are ordered: `viewer` (the bureau: read) < `enforcement` (may acknowledge, annotate, close; optionally
limited to districts) < `admin`. No token → 401; a role that may not → 403. Without a token the API is
readable only when it listens on loopback and has no tokens configured (a developer's machine), or sets
`api.loopback_read` (the demo); anything more then asks for a token (401).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from gshp.api.errors import refused
from gshp.config import ApiSettings

__all__ = ["Authenticator", "Principal", "Role"]

Role = Literal["viewer", "enforcement", "admin"]
_RANK: dict[str, int] = {"viewer": 0, "enforcement": 1, "admin": 2}

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
            # a token's holder is named in the audit chain by its name, else by a short digest — never the token
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
            raise refused(401, "令牌无效", "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if self.open_read:
            return ANONYMOUS
        raise refused(401, "需要令牌：Authorization: Bearer <令牌>",
                      "a bearer token is required: Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": "Bearer"})

    def require(self, role: Role) -> Callable[[Request], Principal]:
        def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            if not principal.may(role):
                if principal is ANONYMOUS:  # open read, no token given: ask for one (the board's login)
                    raise refused(401, f"需要 {role} 角色的令牌：Authorization: Bearer <令牌>",
                                  f"a bearer token of the {role} role is required: Authorization: Bearer <token>",
                                  headers={"WWW-Authenticate": "Bearer"})
                raise refused(403, f"{principal.role} 角色无权执行此操作（需要 {role}）",
                              f"the {principal.role} role may not do this (needs {role})")
            return principal

        return dependency
