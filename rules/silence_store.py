"""Silences in the alert database (table `silences`), each change with its audit record in one transaction.

A silence suppresses sending notifications (never alert or incident state) for events matching all its
matchers, from `starts_at` to `ends_at`. Silences are only ever made explicitly (`gshp notify silence add`
or a caller of `add`) and stay listed after they expire; expiring one early is itself recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from rules.audit import Actor, AuditChain, Transactional
from rules.notify.errors import NotifyError
from rules.notify.silences import Matcher, Silence

__all__ = ["SilenceStore"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts REAL NOT NULL,
        ends REAL NOT NULL,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        created REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS silences_ends ON silences(ends)",
)

MAX_COMMENT = 500


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class SilenceStore:
    def __init__(self, store: Transactional, audit: AuditChain, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        with store.transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def add(self, actor: Actor, matchers: Sequence[Matcher], starts_at: float, ends_at: float,
            comment: str) -> Silence:
        if not matchers:
            raise NotifyError("a silence needs at least one matcher (e.g. site=hehua-plaza)")
        if ends_at <= starts_at:
            raise NotifyError("a silence must end after it starts")
        if not comment.strip() or len(comment) > MAX_COMMENT or not comment.isprintable():
            raise NotifyError(f"a silence needs a comment saying why: 1–{MAX_COMMENT} printable characters")
        s = Silence(uuid.uuid4().hex[:12], tuple(matchers), starts_at, ends_at, actor.name, comment, self.clock())
        with self.store.transaction() as db:
            self._insert(db, s)
            self.audit.append(db, actor, "silence.add", f"silence:{s.id}", _iso(s.created_at), {
                "matchers": [str(m) for m in s.matchers], "starts_at": _iso(starts_at), "ends_at": _iso(ends_at),
                "comment": comment})
        return s

    def expire(self, actor: Actor, silence_id: str) -> bool:
        """End an active or future silence now; False when there is none with this id."""
        now = self.clock()
        with self.store.transaction() as db:
            row = db.execute("SELECT ends FROM silences WHERE id=? AND ends > ?", (silence_id, now)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE silences SET ends=? WHERE id=?", (now, silence_id))
            self.audit.append(db, actor, "silence.expire", f"silence:{silence_id}", _iso(now),
                              {"ends_at": [_iso(row[0]), _iso(now)]})
        return True

    def silences(self, include_expired: bool = False) -> list[Silence]:
        """Active and future silences (the notifier's view), or every silence ever made."""
        with self.store.reading() as db:
            rows = db.execute("SELECT id, matchers, starts, ends, author, comment, created FROM silences "
                              "WHERE ? OR ends > ? ORDER BY starts, id", (include_expired, self.clock())).fetchall()
        return [Silence(r[0], tuple(Matcher.parse(m) for m in json.loads(r[1])), r[2], r[3], r[4], r[5], r[6])
                for r in rows]

    def import_legacy(self, silences: Iterable[Silence]) -> int:
        """Take over silences kept in the notification queue by earlier versions (each one recorded in the
        audit chain as moved); returns how many were new here."""
        moved = 0
        actor = Actor("gshp", "system")
        with self.store.transaction() as db:
            for s in silences:
                if db.execute("SELECT 1 FROM silences WHERE id=?", (s.id,)).fetchone() is not None:
                    continue
                self._insert(db, s)
                self.audit.append(db, actor, "silence.import", f"silence:{s.id}", _iso(self.clock()), {
                    "matchers": [str(m) for m in s.matchers], "starts_at": _iso(s.starts_at),
                    "ends_at": _iso(s.ends_at), "author": s.author, "comment": s.comment,
                    "from": "notify.sqlite"})
                moved += 1
        return moved

    @staticmethod
    def _insert(db: sqlite3.Connection, s: Silence) -> None:
        db.execute("INSERT INTO silences (id, matchers, starts, ends, author, comment, created) "
                   "VALUES (?,?,?,?,?,?,?)", (s.id, json.dumps([str(m) for m in s.matchers], ensure_ascii=False),
                                              s.starts_at, s.ends_at, s.author, s.comment, s.created_at))
