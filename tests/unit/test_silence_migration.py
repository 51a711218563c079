"""Silences that earlier versions kept in notify.sqlite (among them the 30-day ones an acknowledgement used to
create) are moved once into the alert database when the service starts, each move on record in the chain."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gshp.config import parse_config
from gshp.devstack import free_port
from gshp.service import Service
from rules.notify.queue import NotifyQueue


def _service(state: Path) -> Service:
    return Service(parse_config(f"state_dir: {state}\ninflux: {{url: 'http://127.0.0.1:{free_port()}', api: v1, "
                                f"bucket: b}}\napi: {{listen: '127.0.0.1:{free_port()}'}}\nsites: []\n"))


def _close(service: Service) -> None:
    service.notifier.stop()
    service.writer.close()
    service.reader.close()
    service.store.close()
    service.outbox.close()


def test_legacy_silences_move_to_the_alert_database_once_with_an_audit_record(tmp_path: Path) -> None:
    now = time.time()
    queue = NotifyQueue(tmp_path / "notify.sqlite")
    queue._db.execute("INSERT INTO silences (id, matchers, starts, ends, author, comment, created) VALUES "
                      "(?,?,?,?,?,?,?)", ("3f2a9c1d0b7e", json.dumps(["id=a1", "state=firing"]), now,
                                          now + 30 * 86400, "执法一队", "acknowledged", now))
    queue.close()
    service = _service(tmp_path)
    try:
        (moved,) = service.silences.silences()
        assert (moved.id, moved.author, [str(m) for m in moved.matchers]) == (
            "3f2a9c1d0b7e", "执法一队", ["id=a1", "state=firing"])
        assert [s.id for s in service.notifier.silences()] == ["3f2a9c1d0b7e"]
        assert service.notifier.queue.legacy_silences() == []
        (record,) = service.audit.records()
        assert (record.action, record.subject, record.payload["from"]) == (
            "silence.import", "silence:3f2a9c1d0b7e", "notify.sqlite")
    finally:
        _close(service)
    service = _service(tmp_path)
    try:
        assert len(service.silences.silences()) == 1 and len(service.audit.records()) == 1
    finally:
        _close(service)
