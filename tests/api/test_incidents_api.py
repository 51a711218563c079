"""Incidents through the running service fed by the simulated city (the hospital and the school drain 40 %):
list and filters, district scoping, the case actions with their codes (a second close is 409), attachments,
and the evidence package, verified with the served key and by `gshp evidence export|verify`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from gshp.cli import main
from gshp.devstack import Influxd
from gshp.evidence import EvidenceError, PublicKey, verify_package
from tests.api.conftest import Running, city_yaml
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def open_incidents(running: Running, site: str) -> list[dict[str, Any]]:
    r = running.get("/api/incidents", "admin", params={"site": site, "state": "open", "kind": "discharge"})
    assert r.status_code == 200, r.text
    return list(r.json()["incidents"])


@pytest.fixture(scope="module")
def hospital(running: Running) -> dict[str, Any]:
    wait_until(lambda: bool(open_incidents(running, "hospital")), timeout=90, interval=0.5)
    (incident,) = open_incidents(running, "hospital")
    return incident


def test_one_open_discharge_incident_per_site_with_its_figures(running: Running, hospital: dict[str, Any]) -> None:
    for key in ("id", "site", "district", "kind", "severity", "state", "started_at", "ended_at", "volume_m3",
                "peak_deficit_pct", "case"):
        assert key in hospital, key
    assert hospital["site"] == "hospital" and hospital["district"] == "宛城区" and hospital["kind"] == "discharge"
    assert hospital["state"] == "open" and hospital["ended_at"] is None
    assert hospital["started_at"].endswith("+08:00")
    assert set(hospital["case"]) >= {"status", "outcome", "history"} and hospital["case"]["status"] == "new"
    volume = hospital["volume_m3"]
    assert volume is None or volume["low"] <= volume["estimate"] <= volume["high"]
    detail = running.get(f"/api/incidents/{hospital['id']}").json()
    assert detail["timeline"][0]["change"] == "opened"
    # while open: the water drained since it began, from the engine's ledgers
    drained = detail["drained"]
    assert drained["drained_m3"] > 0 and 30 < drained["drained_pct"] < 50
    assert datetime.fromisoformat(drained["from"]) <= datetime.fromisoformat(detail["started_at"]) \
        < datetime.fromisoformat(drained["from"]) + timedelta(minutes=5)
    assert drained["as_of"].endswith("+08:00")
    assert {a["id"] for a in detail["alerts"]} == set(detail["alert_ids"]) and detail["alerts"]


def test_only_a_discharge_incident_tells_the_water_drained_since_it_began(running: Running,
                                                                          hospital: dict[str, Any]) -> None:
    # the hospital's meter E1 is past its calibration: a reminder says nothing about drained water
    wait_until(lambda: any(i["kind"] == "calibration" for i in _all_open(running)), timeout=60, interval=0.5)
    kinds = {i["kind"]: i for i in _all_open(running) if i["site"] == "hospital"}
    assert kinds["discharge"]["drained"] is not None and kinds["calibration"]["drained"] is None
    calibration = running.get(f"/api/incidents/{kinds['calibration']['id']}").json()
    assert calibration["drained"] is None


def _all_open(running: Running) -> list[dict[str, Any]]:
    return list(running.get("/api/incidents", "admin", params={"state": "open"}).json()["incidents"])


def test_filters_scope_and_order(running: Running, hospital: dict[str, Any]) -> None:
    wait_until(lambda: bool(open_incidents(running, "school")), timeout=90, interval=0.5)
    every = running.get("/api/incidents", "admin").json()["incidents"]
    assert {i["site"] for i in every} >= {"hospital", "school"}
    opened = [i["state"] == "open" for i in every]
    assert opened == sorted(opened, reverse=True), "open incidents first"
    mine = running.get("/api/incidents", "wancheng").json()["incidents"]
    assert mine and {i["district"] for i in mine} == {"宛城区"}
    school = open_incidents(running, "school")[0]
    assert running.get(f"/api/incidents/{school['id']}", "wancheng").status_code == 404
    assert running.post(f"/api/incidents/{school['id']}/ack", {}, token="wancheng").status_code == 404
    assert running.get(f"/api/incidents/{school['id']}/evidence", "wancheng").status_code == 404
    assert running.get("/api/incidents", "admin", params={"case": "new", "district": "宛城区"}).json()["incidents"]
    for params, says in (({"state": "bogus"}, "state: Input should be 'open' or 'resolved'"),
                         ({"case": "done"}, "case: Input should be"), ({"kind": "leak"}, "kind: Input should be"),
                         ({"district": "卧龙区"}, "unknown district"), ({"site": "nowhere"}, "unknown site")):
        r = running.get("/api/incidents", "wancheng", params=params)
        assert r.status_code == 422 and says in r.json()["detail"], r.text
    assert running.get("/api/incidents/nope").status_code == 404
    onset = datetime.fromisoformat(hospital["started_at"])
    spans = {"before the onset": ({"to": (onset - timedelta(minutes=1)).isoformat()}, False),
             "from the onset on": ({"from": onset.isoformat()}, True),
             "long after (still open)": ({"from": (onset + timedelta(days=30)).isoformat()}, True)}
    for what, (params, listed) in spans.items():
        found = running.get("/api/incidents", "wancheng", params=params).json()["incidents"]
        assert (hospital["id"] in {i["id"] for i in found}) is listed, what


def test_the_case_goes_new_acknowledged_closed_once_and_reopens_with_a_reason(
        running: Running, hospital: dict[str, Any]) -> None:
    path = f"/api/incidents/{hospital['id']}"
    assert running.post(f"{path}/ack", {}, token="viewer").status_code == 403
    r = running.post(f"{path}/ack", {"comment": "已派人核查"})
    assert r.status_code == 200 and r.json()["case"]["status"] == "acknowledged", r.text
    assert r.json()["case"]["acked_by"] == "宛城区执法大队"
    assert running.post(f"{path}/notes", {"text": "现场发现排水管接入雨水井"}).status_code == 200
    assert running.post(f"{path}/notes", {"text": "x" * 4001}).status_code == 422
    bad = running.post(f"{path}/close", {"outcome": "confirmed_discharge\u200b", "comment": ""})
    assert bad.status_code == 422 and "only looks like" in bad.json()["detail"]
    r = running.post(f"{path}/close", {"outcome": "confirmed_discharge", "comment": "已责令整改"})
    assert r.status_code == 200 and r.json()["case"]["status"] == "closed"
    assert r.json()["case"]["outcome"] == "confirmed_discharge"
    again = running.post(f"{path}/close", {"outcome": "no_discharge_found", "comment": ""}, token="admin")
    assert again.status_code == 409, again.text
    case = running.get(path).json()["case"]
    assert case["outcome"] == "confirmed_discharge"
    assert [h["action"] for h in case["history"]] == ["ack", "note", "close"]
    assert running.post(f"{path}/reopen", {"reason": ""}).status_code == 422
    r = running.post(f"{path}/reopen", {"reason": "复核水样编号有误"}, token="admin")
    assert r.status_code == 200 and r.json()["case"]["status"] == "acknowledged"
    assert running.post(f"{path}/close", {"outcome": "confirmed_discharge", "comment": "复核确认"}).status_code == 200
    history = running.get(path).json()["case"]["history"]
    assert [h["action"] for h in history] == ["ack", "note", "close", "reopen", "close"]
    assert all(h["at"].endswith("+08:00") for h in history)
    audit = [e for e in running.get("/api/audit", "admin").json()["entries"] if e["target"] == hospital["id"]]
    assert [e["action"] for e in audit][-2:] == ["case.reopen", "case.close"]


def test_an_attachment_is_kept_with_its_hash(running: Running, hospital: dict[str, Any]) -> None:
    url = f"{running.url}/api/incidents/{hospital['id']}/attachments"
    headers = {"Authorization": "Bearer enforce-wancheng-0123456789", "Connection": "close"}
    r = requests.post(url, data=PNG, params={"label": "排水口照片"}, timeout=10,
                      headers={**headers, "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    (attached,) = r.json()["case"]["attachments"]
    assert attached["sha256"] == hashlib.sha256(PNG).hexdigest() and attached["label"] == "排水口照片"
    served = running.get(f"/api/incidents/{hospital['id']}/attachments/{attached['id']}")
    assert served.content == PNG and served.headers["content-type"] == "image/png"
    assert running.get(f"/api/incidents/{hospital['id']}/attachments/999").status_code == 404
    wrong = requests.post(url, data=b"GIF89a", timeout=10, headers={**headers, "Content-Type": "image/png"})
    assert wrong.status_code == 422
    big = requests.post(url, data=PNG + b"\x00" * (10 * 1024 * 1024), timeout=30,
                        headers={**headers, "Content-Type": "image/png"})
    assert big.status_code == 413


def test_the_evidence_package_holds_everything_and_verifies_with_the_served_key(
        running: Running, hospital: dict[str, Any]) -> None:
    r = running.get(f"/api/incidents/{hospital['id']}/evidence", "wancheng")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:300]
    key = PublicKey.from_pem(running.get("/api/evidence/key").content)
    ok = verify_package(r.content, key)
    assert ok.files == ("incident.json", "readings.csv", "audit.jsonl", "report.html")
    z = zipfile.ZipFile(io.BytesIO(r.content))
    doc = json.loads(z.read("incident.json"))
    assert doc["incident"]["id"] == hospital["id"] and doc["case"]["history"]
    assert [m["id"] for m in doc["meters"]] == ["E1", "R1", "R2"] and len(doc["config_sha256"]) == 64
    assert doc["site"]["location"] == {"lat": 32.99, "lon": 112.575, "address": None}
    assert doc["meters"][0]["record"] == {  # the meter's record, as evidence: serial and calibration
        "serial": "TUF-2311-0042", "model": "TUF-2000M", "installed": "2024-03-01",
        "calibration": {"number": "宛计检字[2025]第118号", "date": "2025-06-01", "next_due": "2026-06-01"}}
    rows = list(csv.DictReader(io.StringIO(z.read("readings.csv").decode())))
    assert rows and {row["meter"] for row in rows} == {"E1", "R1", "R2"}
    assert {row["site"] for row in rows} == {"hospital"}
    assert doc["readings"]["rows"] == len(rows)
    records = [json.loads(line) for line in z.read("audit.jsonl").decode().splitlines()]
    assert {"case.ack", "case.close"} <= {rec["action"] for rec in records}
    assert all(len(rec["hash"]) == 64 for rec in records)
    html = z.read("report.html").decode()
    assert "宛城区人民医院" in html and "<svg" in html and "Evidence report" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    raw = bytearray(r.content)
    info = z.getinfo("readings.csv")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0x01
    with pytest.raises(EvidenceError) as err:
        verify_package(bytes(raw), key)
    assert err.value.file == "readings.csv"


def test_the_cli_exports_what_the_api_serves_and_verifies_it(running: Running, hospital: dict[str, Any],
                                                             influxd: Influxd, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "city.yaml"
    config.write_text(city_yaml(running.config.state_dir, influxd.url, "api_city", running.config.api.port),
                      encoding="utf-8")
    key = tmp_path / "key.pem"
    key.write_bytes(running.get("/api/evidence/key").content)
    out = tmp_path / "evidence.zip"
    assert main(["evidence", "export", "--config", str(config), "--incident", hospital["id"], "--out", str(out)]) == 0
    assert main(["evidence", "verify", str(out), "--key", str(key)]) == 0
    assert "intact" in capsys.readouterr().out
    z = zipfile.ZipFile(out)
    assert json.loads(z.read("incident.json"))["incident"]["id"] == hospital["id"]
    assert main(["evidence", "export", "--config", str(config), "--incident", "nope", "--out", str(out)]) == 2


def test_a_maintenance_declared_while_the_incident_is_open_is_only_a_claim_on_it(
        running: Running, hospital: dict[str, Any]) -> None:
    now = running.service.clock.now()
    window = {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(), "reason": "回扬 R1",
              "volume_cap_m3": 10}
    r = running.post("/api/sites/hospital/maintenance", window)
    assert r.status_code == 201, r.text
    assert r.json()["claim"] is True
    claims = running.get(f"/api/incidents/{hospital['id']}").json()["maintenance_claims"]
    assert [(c["reason"], c["declared_by"]) for c in claims] == [("回扬 R1", "宛城区执法大队")]
    assert all(c["from"].endswith("+08:00") for c in claims)
    assert running.get(f"/api/incidents/{hospital['id']}").json()["state"] == "open"
