"""The case store on a real alerts.sqlite: lifecycle, exact outcomes, limits, attachments, append-only history,
and that a change whose audit record cannot be written does not happen."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.case import CaseAction, CaseConflict, CaseInputError, CaseStatus, Outcome
from alerting.model import Alert, AlertKind, AlertState
from rules import audited
from rules.audit import Actor, AuditChain
from rules.cases import AttachmentLimits, CaseStore
from rules.notify.silences import Matcher
from rules.settings import MaintenanceWindow, Severity
from rules.silence_store import SilenceStore
from rules.store import AlertStore, StoreError

OFFICER = Actor("宛城区执法大队", "enforcement")
ADMIN = Actor("ops", "admin")
AT = "2026-05-05T09:00:00+00:00"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64


class Stores:
    def __init__(self, root: Path, limits: AttachmentLimits | None = None) -> None:
        self.path = root / "alerts.sqlite"
        self.store = AlertStore(self.path)
        self.audit = AuditChain(self.store)
        self.cases = CaseStore(self.store, self.audit, root / "attachments", limits or AttachmentLimits())
        self.silences = SilenceStore(self.store, self.audit)

    def actions(self) -> list[str]:
        return [r.action for r in self.audit.records()]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s = Stores(tmp_path)
    yield s
    s.close()


def test_a_case_runs_new_acknowledged_closed_and_survives_reopening_the_store(tmp_path: Path) -> None:
    s = Stores(tmp_path)
    assert s.cases.get("inc-1").status is CaseStatus.NEW and s.cases.get("inc-1").history == ()
    s.cases.acknowledge("inc-1", OFFICER, AT, "已派人核查")
    s.cases.note("inc-1", OFFICER, AT, "现场发现排水管接入雨水井")
    s.cases.close("inc-1", OFFICER, AT, "confirmed_discharge", "已责令整改")
    s.close()
    s = Stores(tmp_path)
    case = s.cases.get("inc-1")
    assert (case.status, case.outcome, case.acked_by, case.closed_by) == (
        CaseStatus.CLOSED, Outcome.CONFIRMED_DISCHARGE, OFFICER.name, OFFICER.name)
    assert [e.action for e in case.history] == [CaseAction.ACK, CaseAction.NOTE, CaseAction.CLOSE]
    assert case.history[0].before["status"] == "new" and case.history[0].after["status"] == "acknowledged"
    assert case.history[2].detail == {"outcome": "confirmed_discharge", "comment": "已责令整改"}
    assert s.actions() == ["case.ack", "case.note", "case.close"]
    assert s.audit.verify() == (3, None)
    s.close()


def test_a_second_close_is_a_conflict_and_the_first_verdict_and_history_stay(stores: Stores) -> None:
    stores.cases.acknowledge("inc-1", OFFICER, AT)
    stores.cases.close("inc-1", OFFICER, AT, "confirmed_discharge")
    with pytest.raises(CaseConflict, match="reopen"):
        stores.cases.close("inc-1", ADMIN, AT, "no_discharge_found")
    case = stores.cases.get("inc-1")
    assert case.outcome is Outcome.CONFIRMED_DISCHARGE and case.closed_by == OFFICER.name
    assert [e.action for e in case.history] == [CaseAction.ACK, CaseAction.CLOSE]
    # the refused attempt is on record in the chain, not in the case
    assert stores.actions() == ["case.ack", "case.close", "case.close_refused"]
    assert stores.audit.records()[-1].payload["outcome_kept"] == "confirmed_discharge"


def test_reopen_needs_a_closed_case_and_a_reason_and_both_verdicts_stay_in_the_history(stores: Stores) -> None:
    with pytest.raises(CaseConflict, match="not closed"):
        stores.cases.reopen("inc-1", ADMIN, AT, "复核")
    stores.cases.close("inc-1", OFFICER, AT, "no_discharge_found")
    with pytest.raises(CaseInputError, match="reason: must not be empty"):
        stores.cases.reopen("inc-1", ADMIN, AT, "  ")
    case = stores.cases.reopen("inc-1", ADMIN, AT, "取样化验结果显示为地下水")
    assert (case.status, case.outcome, case.closed_by) == (CaseStatus.ACKNOWLEDGED, None, None)
    case = stores.cases.close("inc-1", ADMIN, AT, "confirmed_discharge")
    assert [(e.action, e.after["outcome"]) for e in case.history] == [
        (CaseAction.CLOSE, "no_discharge_found"), (CaseAction.REOPEN, None), (CaseAction.CLOSE, "confirmed_discharge")]
    assert case.history[1].detail == {"reason": "取样化验结果显示为地下水"}
    assert case.history[1].before["outcome"] == "no_discharge_found"


def test_a_second_ack_is_recorded_but_does_not_replace_the_first(stores: Stores) -> None:
    stores.cases.acknowledge("inc-1", OFFICER, AT)
    later = "2026-05-05T10:00:00+00:00"
    case = stores.cases.acknowledge("inc-1", ADMIN, later, "我也看到了")
    assert (case.acked_by, case.acked_at) == (OFFICER.name, AT)
    assert [(e.actor, e.action) for e in case.history] == [(OFFICER.name, CaseAction.ACK), (ADMIN.name, CaseAction.ACK)]
    assert case.history[1].before == case.history[1].after
    stores.cases.close("inc-1", OFFICER, AT, "other")
    with pytest.raises(CaseConflict):
        stores.cases.acknowledge("inc-1", ADMIN, AT)


@pytest.mark.parametrize("given", [
    "confirmed_discharge\u200b",  # zero-width space
    "\ufeffconfirmed_discharge",  # byte-order mark
    "ｃｏｎｆｉｒｍｅｄ_discharge",  # full-width letters
    "con\ufb01rmed_discharge",  # the 'fi' ligature: NFKC-equal
    "Confirmed_Discharge",
    " confirmed_discharge",
    "confirmed_dischargе",  # Cyrillic е
    "no_discharge",  # the old free value
    "",
    "x" * 5_000_000,
])
def test_an_outcome_that_is_not_exactly_one_of_the_set_is_refused(stores: Stores, given: str) -> None:
    with pytest.raises(CaseInputError, match="outcome"):
        stores.cases.close("inc-1", OFFICER, AT, given)
    assert stores.cases.get("inc-1").status is CaseStatus.NEW and stores.actions() == []


def test_a_look_alike_outcome_is_named_in_the_error() -> None:
    with pytest.raises(CaseInputError, match="only looks like 'confirmed_discharge'"):
        Outcome.parse("confirmed_discharge\u200b")
    with pytest.raises(CaseInputError, match="give one of"):
        Outcome.parse(42)
    assert [Outcome.parse(o.value) for o in Outcome] == list(Outcome)


def test_notes_are_limited_in_length_and_refuse_control_characters(stores: Stores) -> None:
    stores.cases.note("inc-1", OFFICER, AT, "行1\n行2\t" + "水" * 3990)
    with pytest.raises(CaseInputError, match="at most 4000"):
        stores.cases.note("inc-1", OFFICER, AT, "水" * 4001)
    for bad in ("a\x00b", "a\x1b[31mb", "confirmed \u202eegrahcsid", ""):
        with pytest.raises(CaseInputError, match="note"):
            stores.cases.note("inc-1", OFFICER, AT, bad)
    assert len(stores.cases.get("inc-1").history) == 1


def test_attachments_are_checked_hashed_and_stored_under_a_name_of_their_hash(stores: Stores, tmp_path: Path) -> None:
    a = stores.cases.attach("inc-1", OFFICER, AT, PNG, "image/png", "../../etc/passwd 雨水井照片")
    digest = hashlib.sha256(PNG).hexdigest()
    assert a.sha256 == digest and a.size == len(PNG) and a.stored_as == f"{digest}.png"
    stored = stores.cases.attachment_path(a)
    assert stored.parent == tmp_path / "attachments" and stored.read_bytes() == PNG
    assert sorted(p.name for p in (tmp_path / "attachments").iterdir()) == [f"{digest}.png"]
    sample = stores.cases.attach("inc-1", OFFICER, AT, "水样编号 WS-2026-0505-01".encode(), "text/plain")
    case = stores.cases.get("inc-1")
    assert [x.id for x in case.attachments] == [a.id, sample.id]
    assert [e.action for e in case.history] == [CaseAction.ATTACH, CaseAction.ATTACH]
    assert stores.audit.records()[0].payload["sha256"] == digest
    for data, ctype, why in ((JPEG, "image/png", "not image/png"), (PNG, "image/svg+xml", "not accepted"),
                             (b"", "image/png", "empty"), (b"\xff\xfe", "text/plain", "UTF-8"),
                             (b"a\x00b", "text/plain", "control character")):
        with pytest.raises(CaseInputError, match=why):
            stores.cases.attach("inc-1", OFFICER, AT, data, ctype)
    assert len(stores.cases.get("inc-1").attachments) == 2


def test_attachments_are_limited_per_file_and_per_incident(tmp_path: Path) -> None:
    s = Stores(tmp_path, AttachmentLimits(per_file_bytes=1000, per_incident_bytes=2500))
    try:
        with pytest.raises(CaseInputError, match="at most 1000 per file"):
            s.cases.attach("inc-1", OFFICER, AT, PNG + b"\x00" * 1000, "image/png")
        for n in range(2):
            s.cases.attach("inc-1", OFFICER, AT, PNG + bytes([n]) * 900, "image/png")
        with pytest.raises(CaseInputError, match="at most 2500 in all"):
            s.cases.attach("inc-1", OFFICER, AT, PNG + b"\x09" * 900, "image/png")
        assert len(s.cases.get("inc-1").attachments) == 2
        s.cases.attach("inc-2", OFFICER, AT, PNG + b"\x09" * 900, "image/png")  # another incident's budget
    finally:
        s.close()


def test_history_attachments_and_the_chain_refuse_updates_and_deletes(stores: Stores) -> None:
    stores.cases.close("inc-1", OFFICER, AT, "maintenance")
    stores.cases.attach("inc-1", OFFICER, AT, PNG, "image/png")
    db = sqlite3.connect(stores.path)
    try:
        for sql in ("UPDATE case_history SET actor='someone else'", "DELETE FROM case_history",
                    "UPDATE attachments SET sha256='0'", "DELETE FROM attachments",
                    "UPDATE audit SET actor='someone else'", "DELETE FROM audit WHERE seq=1"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()


def _refuse_audit_inserts(path: Path) -> None:
    """What a full disk or a locked-down chain looks like to a writer: the audit insert fails."""
    db = sqlite3.connect(path)
    db.execute("CREATE TRIGGER audit_read_only BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    db.commit()
    db.close()


def test_a_change_whose_audit_record_cannot_be_written_does_not_happen(stores: Stores) -> None:
    stores.cases.acknowledge("inc-1", OFFICER, AT)
    store = AlertStore(stores.path)
    store.record(_alert())
    store.close()
    _refuse_audit_inserts(stores.path)
    start = datetime(2026, 5, 5, 8, tzinfo=UTC)
    window = MaintenanceWindow.model_validate({"from": start, "to": start + timedelta(hours=2), "reason": "回扬 R1",
                                               "volume_cap_m3": 10})
    attempts = [
        lambda: stores.cases.close("inc-1", OFFICER, AT, "confirmed_discharge"),
        lambda: stores.cases.note("inc-1", OFFICER, AT, "x"),
        lambda: stores.cases.attach("inc-1", OFFICER, AT, PNG, "image/png"),
        lambda: audited.declare_maintenance(stores.store, stores.audit, OFFICER, "hehua", window, AT),
        lambda: audited.acknowledge_alert(stores.store, stores.audit, OFFICER, "a1", AT, "note"),
        lambda: audited.close_alert(stores.store, stores.audit, OFFICER, "a1", AT, "other"),
        lambda: stores.silences.add(OFFICER, [Matcher.parse("site=hehua")], 0, 4e9, "回扬"),
    ]
    for attempt in attempts:
        with pytest.raises(StoreError, match="read-only"):
            attempt()
    case = stores.cases.get("inc-1")
    assert case.status is CaseStatus.ACKNOWLEDGED and [e.action for e in case.history] == [CaseAction.ACK]
    assert not (stores.path.parent / "attachments").exists() or not any((stores.path.parent / "attachments").iterdir())
    assert case.attachments == () and stores.store.maintenance() == [] and stores.silences.silences(True) == []
    alert = stores.store.get("a1")
    assert alert is not None and stores.store.acknowledgement("a1") is None and stores.store.annotations("a1") == []
    assert stores.store.outcome("a1") is None and stores.actions() == ["case.ack"]


def test_silences_are_explicit_listed_and_audited(stores: Stores) -> None:
    now = datetime.now(UTC).timestamp()
    s = stores.silences.add(OFFICER, [Matcher.parse("site=hehua")], now, now + 3600, "回扬 R2")
    assert [x.id for x in stores.silences.silences()] == [s.id]
    assert stores.silences.expire(ADMIN, s.id) and not stores.silences.expire(ADMIN, s.id)
    assert stores.silences.silences() == [] and [x.id for x in stores.silences.silences(True)] == [s.id]
    assert stores.actions() == ["silence.add", "silence.expire"]
    with pytest.raises(Exception, match="comment"):
        stores.silences.add(OFFICER, [Matcher.parse("site=hehua")], now, now + 60, " ")


def _alert() -> Alert:
    at = datetime(2026, 5, 5, tzinfo=UTC)
    return Alert("a1", "hehua", "向阳荷花广场", "宛城区", "balance_gross", AlertKind.DISCHARGE,
                 Severity.CRITICAL, AlertState.FIRING, at, at, None, "summary", {"deficit_m3": 20.0})


def test_processes_appending_at_once_keep_one_unbroken_chain(tmp_path: Path) -> None:
    """The service and a `gshp notify silence` command write to the same chain: each append reads the head and
    writes after it in one immediate transaction, so none can slip in between."""
    path = tmp_path / "alerts.sqlite"
    created = AlertStore(path)
    AuditChain(created)
    created.close()
    code = ("import sys; from rules.audit import AuditChain; from rules.store import AlertStore\n"
            "store = AlertStore(sys.argv[1]); chain = AuditChain(store)\n"
            "for n in range(300): chain.record(sys.argv[2], 'note', 'inc-1', '2026-05-05T09:00:00+00:00', {'n': n})\n"
            "store.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"writer-{k}"]) for k in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    store = AlertStore(path)
    try:
        chain = AuditChain(store)
        assert chain.verify() == (900, None)
        assert sorted({r.actor for r in chain.records()}) == ["writer-0", "writer-1", "writer-2"]
    finally:
        store.close()
