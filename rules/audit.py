"""The tamper-evident audit chain in the alert database (`alerts.sqlite`, table `audit`).

Every write people make (cases, attachments, maintenance, silences, acknowledgements) appends one record
**in the same transaction** as the change: if the record cannot be written, the change does not happen.
Each record holds `seq, at, actor, action, subject, payload, prev_hash` and `hash`, the SHA-256 of the
canonical encoding of the others (`canonical`), so editing, deleting or reordering a record breaks the chain
from there on. Triggers refuse UPDATE and DELETE; the head (`seq`, `hash`) is anchored outside the state
directory (InfluxDB `audit_anchor`, the daily report), so a truncated tail shows against the last anchor.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["GENESIS", "Actor", "Anchor", "AuditChain", "AuditRecord", "Break", "canonical", "parse_anchor",
           "record_hash", "verify"]

GENESIS = "0" * 64
"""`prev_hash` of the first record."""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        payload TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
)


class Transactional(Protocol):
    """A store whose write transaction the chain joins (`rules.store.AlertStore`)."""

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a write: a token's holder and role (`enforcement`, `admin`), or a local operator."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "subject": self.subject, "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A chain head kept outside the state directory: record `seq` had `hash`."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.hash}@{self.seq}"


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold, and why."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.reason}"


def canonical(seq: int, at: str, actor: str, action: str, subject: str, payload: Mapping[str, Any],
              prev_hash: str) -> bytes:
    """The bytes a record's hash covers: a JSON array, keys sorted, no spaces, UTF-8."""
    return json.dumps([seq, at, actor, action, subject, payload, prev_hash], ensure_ascii=False,
                      sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def record_hash(seq: int, at: str, actor: str, action: str, subject: str, payload: Mapping[str, Any],
                prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, at, actor, action, subject, payload, prev_hash)).hexdigest()


def parse_anchor(text: str) -> Anchor:
    """`HASH@SEQ` (as printed by the daily report and `gshp audit head`)."""
    h, sep, seq = text.strip().partition("@")
    if not sep or not seq.isdigit() or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise ValueError(f"{text!r} is not an anchor: write HASH@SEQ, 64 lower-case hex digits, '@', the "
                         "record number")
    return Anchor(int(seq), h)


def _rows(db: sqlite3.Connection, after: int = 0) -> Iterator[tuple[Any, ...]]:
    yield from db.execute("SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit "
                          "WHERE seq > ? ORDER BY seq", (after,))


def verify(rows: Iterator[tuple[Any, ...]] | Sequence[tuple[Any, ...]],
           anchors: Sequence[Anchor] = ()) -> tuple[int, Break | None]:
    """Walk the records in `seq` order: (records checked, the first break or None). Each record must follow
    the previous one (`seq` + 1, `prev_hash` = its hash) and hash to its `hash`; each anchor must name a
    record that is there with that hash (a missing one means the tail was cut)."""
    prev_seq, prev_hash, count = 0, GENESIS, 0
    by_seq = {a.seq: a for a in anchors}
    for seq, at, actor, action, subject, payload_text, stored_prev, stored_hash in rows:
        if seq != prev_seq + 1:
            return count, Break(prev_seq + 1, f"missing (the next record is {seq}): records were deleted or "
                                              "renumbered")
        if stored_prev != prev_hash:
            return count, Break(seq, "does not follow the record before it (prev_hash differs): records were "
                                     "reordered, replaced or deleted")
        try:
            payload = json.loads(payload_text)
        except ValueError:
            return count, Break(seq, "payload is not JSON: it was edited")
        if record_hash(seq, at, actor, action, subject, payload, stored_prev) != stored_hash:
            return count, Break(seq, "its content does not match its hash: the record was edited")
        anchor = by_seq.get(seq)
        if anchor is not None and anchor.hash != stored_hash:
            return count, Break(seq, f"differs from the anchor {anchor}: the chain was rewritten from here")
        prev_seq, prev_hash, count = seq, stored_hash, count + 1
    for a in sorted(anchors, key=lambda a: a.seq):
        if a.seq > prev_seq:
            return count, Break(prev_seq + 1, f"missing: the chain ends at record {prev_seq} but the anchor {a} "
                                              f"shows it reached record {a.seq} (the tail was cut)")
    return count, None


class AuditChain:
    """The chain in the alert database; `append` joins the caller's transaction on the same store."""

    def __init__(self, store: Transactional) -> None:
        self.store = store
        with store.transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def append(self, db: sqlite3.Connection, actor: Actor | str, action: str, subject: str, at: str,
               payload: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one record inside the open transaction `db` (from `store.transaction()`); raises when it
        cannot be written, so the caller's change rolls back with it."""
        if not db.in_transaction:
            raise RuntimeError("an audit record is written inside the transaction of the change it records")
        name = actor.name if isinstance(actor, Actor) else actor
        body = {**({"role": actor.role} if isinstance(actor, Actor) else {}), **(payload or {})}
        body = json.loads(json.dumps(body, ensure_ascii=False, allow_nan=False))  # stored exactly as hashed
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        digest = record_hash(seq, at, name, action, subject, body, prev)
        db.execute("INSERT INTO audit (seq, at, actor, action, subject, payload, prev_hash, hash) "
                   "VALUES (?,?,?,?,?,?,?,?)",
                   (seq, at, name, action, subject, json.dumps(body, ensure_ascii=False, sort_keys=True),
                    prev, digest))
        return AuditRecord(seq, at, name, action, subject, body, prev, digest)

    def record(self, actor: Actor | str, action: str, subject: str, at: str,
               payload: Mapping[str, Any] | None = None) -> AuditRecord:
        """A record of its own, for a write that changes nothing else (a refused attempt)."""
        with self.store.transaction() as db:
            return self.append(db, actor, action, subject, at, payload)

    def last(self) -> AuditRecord | None:
        """The newest record, or None while the chain is empty."""
        with self.store.reading() as db:
            row = db.execute("SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit "
                             "ORDER BY seq DESC LIMIT 1").fetchone()
        return AuditRecord(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7]) if row \
            else None

    def head(self) -> Anchor | None:
        """The last record's (seq, hash), or None while the chain is empty."""
        last = self.last()
        return Anchor(last.seq, last.hash) if last else None

    def records(self, subject: str | None = None, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records in order (of one subject, e.g. an incident id, when given)."""
        where, args = ("seq > ?", [after]) if subject is None else ("seq > ? AND subject = ?", [after, subject])
        sql = (f"SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit WHERE {where} "
               "ORDER BY seq")
        with self.store.reading() as db:
            rows = db.execute(sql + (" LIMIT ?" if limit else ""), [*args, *([limit] if limit else [])]).fetchall()
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify(self, anchors: Sequence[Anchor] = ()) -> tuple[int, Break | None]:
        with self.store.reading() as db:
            return verify(list(_rows(db)), anchors)

    def entries(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` records, oldest first, in the shape `/api/audit` has always served
        (`at, who, role, action, target, detail`) with `seq` and `hash` beside them."""
        with self.store.reading() as db:
            rows = db.execute("SELECT seq, at, actor, action, subject, payload, hash FROM audit "
                              "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for seq, at, actor, action, subject, payload_text, digest in reversed(rows):
            detail = json.loads(payload_text)
            role = detail.pop("role", None)
            out.append({"seq": seq, "at": at, "who": actor, "role": role, "action": action, "target": subject,
                        **({"detail": detail} if detail else {}), "hash": digest})
        return out
