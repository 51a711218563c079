"""The case store: the case each incident carries (`new → acknowledged → closed`), in the alert database.

Tables `cases` (the current state per incident id), `case_history` (append-only: who, when, what, the case
before and after) and `attachments` (the stored files' hashes; the files live under `<state_dir>/attachments/`
named by their SHA-256, never by the uploader). Every change writes its history entry and its audit record
(`rules.audit`) in the same transaction as the change. A closed case is not closed again (`CaseConflict`, the
refused attempt is kept in the audit chain only); a changed verdict is an explicit `reopen` with a reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerting.case import (
    Attachment,
    Case,
    CaseAction,
    CaseConflict,
    CaseEntry,
    CaseInputError,
    CaseStatus,
    Outcome,
    check_text,
)
from rules.audit import Actor, AuditChain, Transactional

__all__ = ["CONTENT_TYPES", "AttachmentLimits", "CaseStore"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cases (
        incident_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        outcome TEXT,
        acked_by TEXT,
        acked_at TEXT,
        closed_by TEXT,
        closed_at TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS case_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS case_history_incident ON case_history(incident_id, seq)",
    """CREATE TABLE IF NOT EXISTS attachments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        label TEXT NOT NULL,
        stored_as TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS attachments_incident ON attachments(incident_id, id)",
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
          BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
      for table in ("case_history", "attachments") for op in ("UPDATE", "DELETE")),
)

CONTENT_TYPES: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf",
                                 "text/plain": "txt"}
"""Attachments accepted (photos of the drain, scanned forms, sample numbers) and the stored file's suffix."""

_MAGIC = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "application/pdf": (b"%PDF-",)}

MAX_INCIDENT_ID = 200


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    per_file_bytes: int = 10 * 1024 * 1024
    per_incident_bytes: int = 50 * 1024 * 1024
    label_chars: int = 200


def _check_content(data: bytes, content_type: str) -> None:
    """The declared type must be one we keep, and the bytes must be of that type."""
    if content_type not in CONTENT_TYPES:
        raise CaseInputError(f"attachment: content type {content_type[:80]!r} is not accepted: send "
                             f"{', '.join(CONTENT_TYPES)}")
    if content_type == "text/plain":
        try:
            check_text("attachment", data.decode("utf-8"), limit=len(data))
        except UnicodeDecodeError:
            raise CaseInputError("attachment: text/plain must be UTF-8 text") from None
        return
    if not data.startswith(_MAGIC[content_type]):
        raise CaseInputError(f"attachment: the content is not {content_type} (its first bytes say otherwise)")


def _check_incident(incident_id: str) -> str:
    if not incident_id or len(incident_id) > MAX_INCIDENT_ID or not incident_id.isprintable():
        raise CaseInputError(f"incident id {incident_id[:40]!r}: 1–{MAX_INCIDENT_ID} printable characters")
    return incident_id


def _state(row: tuple[Any, ...] | None) -> dict[str, Any]:
    """The case's current fields (the `before`/`after` of history entries)."""
    if row is None:
        return {"status": CaseStatus.NEW.value, "outcome": None, "acked_by": None, "acked_at": None,
                "closed_by": None, "closed_at": None}
    return dict(zip(("status", "outcome", "acked_by", "acked_at", "closed_by", "closed_at"), row, strict=True))


class CaseStore:
    """Cases in the alert database, written through its transactions with their audit records."""

    def __init__(self, store: Transactional, audit: AuditChain, attachment_dir: Path,
                 limits: AttachmentLimits = AttachmentLimits()) -> None:
        self.store = store
        self.audit = audit
        self.attachment_dir = attachment_dir
        self.limits = limits
        with store.transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, incident_id: str) -> Case:
        """The incident's case (a fresh `new` case when nothing was done yet), with history and attachments."""
        with self.store.reading() as db:
            fields = _state(self._row(db, incident_id))
            history = db.execute("SELECT seq, at, actor, action, before, after, detail FROM case_history "
                                 "WHERE incident_id=? ORDER BY seq", (incident_id,)).fetchall()
            files = db.execute("SELECT id, sha256, size, content_type, label, stored_as, added_by, added_at "
                               "FROM attachments WHERE incident_id=? ORDER BY id", (incident_id,)).fetchall()
        return Case(incident_id, CaseStatus(fields["status"]),
                    Outcome(fields["outcome"]) if fields["outcome"] else None, fields["acked_by"],
                    fields["acked_at"], fields["closed_by"], fields["closed_at"],
                    tuple(CaseEntry(r[0], incident_id, r[1], r[2], CaseAction(r[3]), json.loads(r[4]),
                                    json.loads(r[5]), json.loads(r[6])) for r in history),
                    tuple(Attachment(r[0], incident_id, *r[1:]) for r in files))

    def statuses(self) -> dict[str, CaseStatus]:
        """Every incident's case status that is not `new` (for list filters)."""
        with self.store.reading() as db:
            return {r[0]: CaseStatus(r[1]) for r in db.execute("SELECT incident_id, status FROM cases")}

    def attachment_path(self, attachment: Attachment) -> Path:
        return self.attachment_dir / attachment.stored_as

    # -- writing ----------------------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, actor: Actor, at: str, comment: str | None = None) -> Case:
        """`new → acknowledged`. A later acknowledgement is recorded in the history; the first `acked_by`
        stays. A closed case is not acknowledged (reopen it)."""
        _check_incident(incident_id)
        detail = {"comment": check_text("comment", comment)} if comment else {}
        with self.store.transaction() as db:
            before = _state(self._row(db, incident_id))
            if before["status"] == CaseStatus.CLOSED:
                raise CaseConflict(f"the case of {incident_id} is closed: reopen it (with a reason) to act on it")
            after = dict(before)
            if before["acked_by"] is None:
                after.update(status=CaseStatus.ACKNOWLEDGED.value, acked_by=actor.name, acked_at=at)
            self._write(db, incident_id, actor, at, CaseAction.ACK, before, after, detail)
        return self.get(incident_id)

    def note(self, incident_id: str, actor: Actor, at: str, text: str) -> Case:
        """Add a note (any status: a note does not change the verdict)."""
        _check_incident(incident_id)
        detail = {"text": check_text("note", text, required=True)}
        with self.store.transaction() as db:
            state = _state(self._row(db, incident_id))
            self._write(db, incident_id, actor, at, CaseAction.NOTE, state, state, detail)
        return self.get(incident_id)

    def close(self, incident_id: str, actor: Actor, at: str, outcome: object, comment: str = "") -> Case:
        """Close with an outcome. A closed case raises `CaseConflict`; the refused attempt goes to the audit
        chain, not to the case's history, and the first verdict stays."""
        _check_incident(incident_id)
        verdict = Outcome.parse(outcome)
        detail = {"outcome": verdict.value, **({"comment": check_text("comment", comment)} if comment else {})}
        refused: dict[str, Any] | None = None
        with self.store.transaction() as db:
            before = _state(self._row(db, incident_id))
            if before["status"] == CaseStatus.CLOSED:
                refused = before
                self.audit.append(db, actor, "case.close_refused", incident_id, at,
                                  {**detail, "closed_by": before["closed_by"], "outcome_kept": before["outcome"]})
            else:
                after = {**before, "status": CaseStatus.CLOSED.value, "outcome": verdict.value,
                         "closed_by": actor.name, "closed_at": at}
                self._write(db, incident_id, actor, at, CaseAction.CLOSE, before, after, detail)
        if refused is not None:
            raise CaseConflict(f"the case of {incident_id} was closed by {refused['closed_by']} at "
                               f"{refused['closed_at']} as {refused['outcome']}: reopen it (with a reason) to "
                               "change the outcome")
        return self.get(incident_id)

    def reopen(self, incident_id: str, actor: Actor, at: str, reason: str) -> Case:
        """`closed → acknowledged`, the outcome cleared; the reason and the old verdict stay in the history.
        Who may reopen (the district's enforcement, admin) is checked by the caller."""
        _check_incident(incident_id)
        detail = {"reason": check_text("reason", reason, required=True)}
        with self.store.transaction() as db:
            before = _state(self._row(db, incident_id))
            if before["status"] != CaseStatus.CLOSED:
                raise CaseConflict(f"the case of {incident_id} is {before['status']}, not closed: nothing to reopen")
            after = {**before, "status": CaseStatus.ACKNOWLEDGED.value, "outcome": None, "closed_by": None,
                     "closed_at": None}
            self._write(db, incident_id, actor, at, CaseAction.REOPEN, before, after, detail)
        return self.get(incident_id)

    def attach(self, incident_id: str, actor: Actor, at: str, data: bytes, content_type: str,
               label: str = "") -> Attachment:
        """Keep a file (photo, scanned form, sample numbers) with the case. The bytes are checked against the
        declared type and the size limits, written under the attachment directory as `<sha256>.<suffix>`,
        then recorded with their hash (history and audit in one transaction)."""
        _check_incident(incident_id)
        check_text("label", label, limit=self.limits.label_chars)
        if len(data) > self.limits.per_file_bytes:
            raise CaseInputError(f"attachment: {len(data)} bytes, at most {self.limits.per_file_bytes} per file")
        if not data:
            raise CaseInputError("attachment: the file is empty")
        _check_content(data, content_type)
        digest = hashlib.sha256(data).hexdigest()
        stored_as = f"{digest}.{CONTENT_TYPES[content_type]}"
        self._store_file(stored_as, data)
        try:
            row_id = self._record_attachment(incident_id, actor, at, data, content_type, label, digest, stored_as)
        except BaseException:
            self._forget_file(stored_as)
            raise
        return Attachment(row_id, incident_id, digest, len(data), content_type, label, stored_as, actor.name, at)

    def _record_attachment(self, incident_id: str, actor: Actor, at: str, data: bytes, content_type: str, label: str,
                           digest: str, stored_as: str) -> int:
        with self.store.transaction() as db:
            used = db.execute("SELECT COALESCE(SUM(size), 0) FROM attachments WHERE incident_id=?",
                              (incident_id,)).fetchone()[0]
            if used + len(data) > self.limits.per_incident_bytes:
                raise CaseInputError(f"attachment: the incident holds {used} bytes of attachments, at most "
                                     f"{self.limits.per_incident_bytes} in all")
            cur = db.execute("INSERT INTO attachments (incident_id, sha256, size, content_type, label, stored_as, "
                             "added_by, added_at) VALUES (?,?,?,?,?,?,?,?)",
                             (incident_id, digest, len(data), content_type, label, stored_as, actor.name, at))
            row_id = cur.lastrowid
            assert row_id is not None
            state = _state(self._row(db, incident_id))
            self._write(db, incident_id, actor, at, CaseAction.ATTACH, state, state,
                        {"attachment": row_id, "sha256": digest, "size": len(data), "content_type": content_type,
                         "label": label})
        return row_id

    # -- helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _row(db: sqlite3.Connection, incident_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = db.execute(
            "SELECT status, outcome, acked_by, acked_at, closed_by, closed_at FROM cases WHERE incident_id=?",
            (incident_id,)).fetchone()
        return row

    def _write(self, db: sqlite3.Connection, incident_id: str, actor: Actor, at: str, action: CaseAction,
               before: Mapping[str, Any], after: Mapping[str, Any], detail: Mapping[str, Any]) -> None:
        """The case's new state, its history entry and its audit record: one transaction (the caller's)."""
        db.execute("INSERT INTO cases (incident_id, status, outcome, acked_by, acked_at, closed_by, closed_at, "
                   "updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(incident_id) DO UPDATE SET "
                   "status=excluded.status, outcome=excluded.outcome, acked_by=excluded.acked_by, "
                   "acked_at=excluded.acked_at, closed_by=excluded.closed_by, closed_at=excluded.closed_at, "
                   "updated_at=excluded.updated_at",
                   (incident_id, after["status"], after["outcome"], after["acked_by"], after["acked_at"],
                    after["closed_by"], after["closed_at"], at))
        dumps = json.dumps
        db.execute("INSERT INTO case_history (incident_id, at, actor, action, before, after, detail) "
                   "VALUES (?,?,?,?,?,?,?)",
                   (incident_id, at, actor.name, action.value, dumps(dict(before), ensure_ascii=False),
                    dumps(dict(after), ensure_ascii=False), dumps(dict(detail), ensure_ascii=False)))
        changed = {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
        self.audit.append(db, actor, f"case.{action.value}", incident_id, at, {**detail, "changed": changed})

    def _forget_file(self, name: str) -> None:
        """Remove a file written for an attachment that was not recorded, unless a recorded one shares it."""
        with contextlib.suppress(Exception), self.store.reading() as db:
            if db.execute("SELECT 1 FROM attachments WHERE stored_as=?", (name,)).fetchone() is None:
                (self.attachment_dir / name).unlink(missing_ok=True)

    def _store_file(self, name: str, data: bytes) -> None:
        """Write the file durably (temporary file, fsync, rename); the same content is kept once."""
        target = self.attachment_dir / name
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == name.partition(".")[0]:
            return
        self.attachment_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.attachment_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
