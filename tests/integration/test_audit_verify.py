"""`gshp audit verify` (run as a subprocess) against a real alerts.sqlite and a real influxd holding the anchor
that went there through the outbox: an intact chain passes; an edited, deleted or reordered record, a cut tail
and a rewritten tail are each named."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from collector.drain import Drainer
from collector.influx.writer import make_writer
from collector.outbox import Outbox
from gshp.anchor import AnchorJob, chain_name
from gshp.cli import main
from gshp.config import Config, parse_config
from gshp.devstack import Influxd, free_port
from gshp.report.build import build_daily_report
from gshp.roles import ProcessRole
from rules.audit import Actor, AuditChain
from rules.cases import CaseStore
from rules.store import AlertStore

pytestmark = pytest.mark.integration

OFFICER = Actor("宛城区执法大队", "enforcement")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _yaml(state: Path, influx_url: str, db: str) -> str:
    return (f"timezone: Asia/Shanghai\nstate_dir: {state}\ninflux: {{url: '{influx_url}', api: v1, bucket: {db}}}\n"
            f"api: {{listen: '127.0.0.1:{free_port()}'}}\n"
            "sites:\n  - {id: hehua, name: 向阳荷花广场, district: 宛城区, meters: [{id: E1, role: extraction}, "
            "{id: R1, role: reinjection}]}\n")


def _config(root: Path, name: str, influx_url: str, db: str) -> Path:
    state = root / name
    state.mkdir(exist_ok=True)
    f = root / f"{name}.yaml"
    f.write_text(_yaml(state, influx_url, db), encoding="utf-8")
    return f


def _verify(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gshp.cli", "audit", "verify", "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def _write_cases(state: Path) -> None:
    """Six records: ack, note, close, close refused, reopen, attach."""
    store = AlertStore(state / "alerts.sqlite")
    audit = AuditChain(store)
    cases = CaseStore(store, audit, state / "attachments")
    at = "2026-05-05T09:00:00+00:00"
    cases.acknowledge("inc-1", OFFICER, at, "已派人核查")
    cases.note("inc-1", OFFICER, at, "现场发现排水管接入雨水井")
    cases.close("inc-1", OFFICER, at, "confirmed_discharge")
    with pytest.raises(Exception, match="reopen"):
        cases.close("inc-1", OFFICER, at, "no_discharge_found")
    cases.reopen("inc-1", Actor("ops", "admin"), at, "复核取样")
    cases.attach("inc-1", OFFICER, at, PNG, "image/png", "雨水井照片")
    store.close()


def _anchor(config: Config) -> None:
    """What the running service does: the head into the outbox, the drainer into InfluxDB."""
    store = AlertStore(config.state_dir / "alerts.sqlite")
    outbox = Outbox(config.state_dir / "outbox.sqlite", config.outbox)
    writer = make_writer(config.influx)
    try:
        job = AnchorJob(AuditChain(store), outbox.put, chain_name(ProcessRole.ALL, config.shard))
        assert job.tick(datetime.now(UTC)) is not None
        drainer = Drainer(outbox, writer)
        assert drainer.prepare()
        while outbox.depth:
            assert drainer.drain_once() > 0
    finally:
        writer.close()
        outbox.close()
        store.close()


def _tamper(db_path: Path, *statements: str) -> None:
    db = sqlite3.connect(db_path)
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + ";".join(statements))
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def anchored(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A state directory with a six-record chain whose head is anchored in InfluxDB; its config."""
    root = tmp_path_factory.mktemp("audit")
    f = _config(root, "original", influxd.url, "audit_verify")
    config = parse_config(f.read_text(encoding="utf-8"))
    _write_cases(config.state_dir)
    _anchor(config)
    return root, influxd.url


def _copy(anchored: tuple[Path, str], name: str) -> tuple[Path, Path]:
    """A copy of the anchored state under another name (same InfluxDB, so the same anchor): (config, db)."""
    root, url = anchored
    f = _config(root, name, url, "audit_verify")
    shutil.copy(root / "original" / "alerts.sqlite", root / name / "alerts.sqlite")
    return f, root / name / "alerts.sqlite"


def test_an_intact_chain_passes_and_shows_the_anchor_read_from_influxdb(anchored: tuple[Path, str]) -> None:
    f, _ = _copy(anchored, "intact")
    r = _verify(f)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "anchor of chain all-0 from InfluxDB: " in r.stdout and "@6 " in r.stdout
    assert "audit chain intact: 6 record(s)" in r.stdout and "1 anchor(s) held" in r.stdout


TAMPERING: dict[str, tuple[tuple[str, ...], str]] = {
    "edited payload": (("UPDATE audit SET payload = replace(payload, 'confirmed_discharge', 'no_discharge_found') "
                        "WHERE seq = 3",), "record 3: its content does not match its hash"),
    "edited actor": (("UPDATE audit SET actor = 'someone else' WHERE seq = 2",),
                     "record 2: its content does not match its hash"),
    "deleted record": (("DELETE FROM audit WHERE seq = 4",), "record 4: missing"),
    "reordered records": (("UPDATE audit SET seq = 100 WHERE seq = 2", "UPDATE audit SET seq = 2 WHERE seq = 3",
                           "UPDATE audit SET seq = 3 WHERE seq = 100"), "record 2: does not follow"),
    "cut tail": (("DELETE FROM audit WHERE seq >= 5",), "record 5: missing: the chain ends at record 4 but the anchor"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_and_the_first_broken_record_named(anchored: tuple[Path, str], case: str) -> None:
    statements, named = TAMPERING[case]
    f, db = _copy(anchored, case.replace(" ", "-"))
    _tamper(db, *statements)
    r = _verify(f)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "audit chain BROKEN at " + named in r.stderr, r.stderr


def test_a_tail_cut_and_written_again_differs_from_the_anchor(anchored: tuple[Path, str]) -> None:
    f, db = _copy(anchored, "rewritten")
    _tamper(db, "DELETE FROM audit WHERE seq >= 3")
    store = AlertStore(db)
    audit = AuditChain(store)
    for n in range(4):  # a forger re-appends records that hash correctly, up to and past the anchored seq
        audit.record(OFFICER, "case.note", "inc-1", "2026-05-05T09:00:00+00:00", {"text": f"n{n}"})
    store.close()
    r = _verify(f)
    assert r.returncode == 1 and "record 6: differs from the anchor" in r.stderr, r.stdout + r.stderr
    assert _verify(f, "--offline").returncode == 0, "without an anchor a consistent rewrite cannot be seen"


def test_an_anchor_given_by_hand_detects_a_cut_tail_offline(anchored: tuple[Path, str]) -> None:
    f, db = _copy(anchored, "by-hand")
    head = subprocess.run([sys.executable, "-m", "gshp.cli", "audit", "head", "--config", str(f)],
                          capture_output=True, text=True, timeout=60, check=True).stdout.split()[0]
    assert head.endswith("@6")
    _tamper(db, "DELETE FROM audit WHERE seq = 6")
    assert _verify(f, "--offline").returncode == 0
    r = _verify(f, "--offline", "--anchor", head)
    assert r.returncode == 1 and "record 6: missing" in r.stderr
    assert _verify(f, "--offline", "--anchor", "nonsense").returncode == 2


def test_without_influxdb_an_intact_chain_is_not_called_verified(tmp_path: Path,
                                                                  anchored: tuple[Path, str]) -> None:
    root, _ = anchored
    f = _config(tmp_path, "no-influx", f"http://127.0.0.1:{free_port()}", "audit_verify")
    shutil.copy(root / "original" / "alerts.sqlite", tmp_path / "no-influx" / "alerts.sqlite")
    r = _verify(f)
    assert r.returncode == 3 and "cut tail cannot be ruled out" in r.stderr, r.stdout + r.stderr


def test_the_daily_report_prints_the_chain_head(anchored: tuple[Path, str]) -> None:
    f, db = _copy(anchored, "report")
    config = parse_config(f.read_text(encoding="utf-8"))
    store = AlertStore(db)
    try:
        head = AuditChain(store).head()
        report = build_daily_report(config, datetime(2026, 5, 5).date(), None, _NoReadings(), store)
    finally:
        store.close()
    assert head is not None and any(f"{head.hash}@{head.seq}" in n for n in report.notes), report.notes


class _NoReadings:
    def flow(self, start: datetime, stop: datetime, site: str | None = None) -> pd.DataFrame:
        return pd.DataFrame(columns=["ts", "site", "meter", "role", "rate_m3h", "total_m3"])



def test_a_split_process_has_its_chain_in_its_own_state_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    f = tmp_path / "split.yaml"
    f.write_text(_yaml(tmp_path / "state", f"http://127.0.0.1:{free_port()}", "b")
                 + f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n", encoding="utf-8")
    store = AlertStore(tmp_path / "state" / "rules-1" / "alerts.sqlite")
    head = AuditChain(store).record(OFFICER, "case.note", "inc-1", "2026-05-05T09:00:00+00:00", {"text": "x"})
    store.close()
    assert main(["audit", "head", "--config", str(f), "--role", "rules", "--shard", "1/2"]) == 0
    assert capsys.readouterr().out.startswith(f"{head.hash}@1")
    assert main(["audit", "verify", "--config", str(f), "--role", "rules", "--shard", "1/2", "--offline"]) == 0
    assert main(["audit", "head", "--config", str(f), "--role", "rules", "--shard", "5/2"]) == 2


def test_listed_records_rehash_with_the_documented_canonical_encoding(anchored: tuple[Path, str],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """What a third party does with docs/cases.md alone: SHA-256 of the compact, key-sorted UTF-8 JSON array."""
    f, _ = _copy(anchored, "listed")
    assert main(["audit", "list", "--config", str(f), "--subject", "inc-1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["action"] for r in records] == ["case.ack", "case.note", "case.close", "case.close_refused",
                                              "case.reopen", "case.attach"]
    prev = "0" * 64
    for r in records:
        body = [r["seq"], r["at"], r["actor"], r["action"], r["subject"], r["payload"], r["prev_hash"]]
        text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert r["prev_hash"] == prev and hashlib.sha256(text.encode("utf-8")).hexdigest() == r["hash"]
        prev = r["hash"]
    assert records[2]["payload"]["changed"]["outcome"] == [None, "confirmed_discharge"]
    assert records[0]["payload"]["role"] == "enforcement" and records[0]["actor"] == "宛城区执法大队"
