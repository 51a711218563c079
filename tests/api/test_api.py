"""Every API route, for every role, against a running service fed by the simulated city."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.api.conftest import Running
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def firing_alerts(running: Running, site: str) -> list[dict[str, object]]:
    return [a for a in running.get(f"/api/alerts?site={site}&state=firing", "admin").json()["alerts"]]


@pytest.fixture(scope="module")
def hospital_alert(running: Running) -> dict[str, object]:
    """The hospital's first firing discharge alert (its E1's calibration reminder fires too, from the start)."""
    def discharge() -> list[dict[str, object]]:
        return [a for a in firing_alerts(running, "hospital") if a["kind"] == "discharge"]
    wait_until(lambda: bool(discharge()), timeout=60, interval=0.5)
    return discharge()[0]


def test_no_token_is_401_and_a_wrong_token_too(running: Running) -> None:
    for path in ("/api/sites", "/api/alerts", "/api/sites/hehua", "/api/me", "/api/stream"):
        r = running.get(path, token=None)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = requests.get(running.url + "/api/sites", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401


def test_health_metrics_openapi_and_board_need_no_token(running: Running) -> None:
    assert running.get("/healthz", None).json()["status"] == "ok"
    assert "gshp_outbox_depth" in running.get("/metrics", None).text
    paths = running.get("/openapi.json", None).json()["paths"]
    for p in ("/api/sites", "/api/sites/{site_id}", "/api/alerts", "/api/alerts/{alert_id}",
              "/api/alerts/{alert_id}/ack", "/api/alerts/{alert_id}/notes", "/api/stream"):
        assert p in paths
    board = running.get("/", None)
    assert board.status_code == 200 and "地温空调回灌监管" in board.text


def test_board_and_api_docs_load_nothing_from_outside(running: Running) -> None:
    # government networks are offline: the board and the API docs name no other host, and every file they
    # load is served by this process (the browser test checks the requests a real page makes)
    pages = {path: running.get(path, None) for path in ("/", "/static/board.js", "/static/board.css", "/docs")}
    for path, r in pages.items():
        assert r.status_code == 200, path
        assert "cdn" not in r.text.lower() and "https://" not in r.text and "http://" not in r.text, path
        assert "fonts.googleapis" not in r.text, path
    assert "swagger-ui" in pages["/docs"].text and "/openapi.json" in pages["/docs"].text
    assert running.get("/redoc", None).status_code == 404, "ReDoc loads its logo from a CDN: not served"
    for path in ("/", "/docs"):
        linked = [u for u in re.findall(r'(?:src|href)="([^"]+)"', pages[path].text) if not u.startswith("#")]
        assert linked, path
        for url in linked:
            assert url.startswith("/") and not url.startswith("//"), (path, url)
            assert running.get(url, None).status_code == 200, (path, url)


def test_me_tells_role_districts_timezone_and_the_clock(running: Running) -> None:
    me = running.get("/api/me", "wancheng").json()
    clock = me.pop("clock")
    assert me == {
        "name": "宛城区执法大队", "role": "enforcement", "districts": ["宛城区"], "timezone": "Asia/Shanghai",
        "version": running.get("/api/me").json()["version"]}
    # the service runs on a simulated clock 600 times faster than the wall clock: data time, ahead of it
    now = datetime.fromisoformat(clock["now"])
    assert clock["kind"] == "data" and clock["speed"] == 600.0
    assert now.utcoffset() == timedelta(hours=8) and now > datetime.now(UTC)


def test_sites_and_districts_tell_the_water_drained_today(running: Running,
                                                          hospital_alert: dict[str, object]) -> None:
    def snapshot() -> dict[str, object] | None:
        body = running.get("/api/sites").json()
        hospital = {s["id"]: s for s in body["sites"]}["hospital"]["drained_today"]
        return body if hospital and hospital["extracted_m3"] > 50 else None  # after a midnight: wait again

    wait_until(lambda: snapshot() is not None, timeout=60, interval=0.5)
    body = snapshot()
    assert body is not None
    sites = {s["id"]: s["drained_today"] for s in body["sites"]}  # type: ignore[attr-defined]
    hospital, hehua = sites["hospital"], sites["hehua"]
    assert 30 < hospital["drained_pct"] < 50  # it drains 40 % of what it pumps
    assert hospital["drained_m3"] == pytest.approx(hospital["extracted_m3"] - hospital["reinjected_m3"], abs=0.002)
    assert abs(hehua["drained_pct"]) < 2
    start, as_of = datetime.fromisoformat(hospital["from"]), datetime.fromisoformat(hospital["as_of"])
    assert start.utcoffset() == as_of.utcoffset() == timedelta(hours=8)
    assert start.date() == as_of.date() and start < as_of  # today, in the configured zone
    district = {d["district"]: d["drained_today"] for d in body["districts"]}["宛城区"]  # type: ignore[attr-defined]
    assert district["drained_m3"] == pytest.approx(hospital["drained_m3"] + hehua["drained_m3"], abs=0.01)
    assert district["as_of"] == min(hospital["as_of"], hehua["as_of"])


def test_sites_list_status_flows_balance_and_district_counts(running: Running,
                                                             hospital_alert: dict[str, object]) -> None:
    def hour_complete() -> bool:
        bal = {s["id"]: s for s in running.get("/api/sites").json()["sites"]}["hospital"]["balance"]["1h"]
        return bool(bal and bal["complete"])

    wait_until(hour_complete, timeout=60, interval=0.5)
    body = running.get("/api/sites").json()
    sites = {s["id"]: s for s in body["sites"]}
    assert set(sites) == {"hehua", "hospital", "school"}
    assert sites["hospital"]["status"] == "discharge" and sites["hospital"]["alerts_firing"] >= 1
    assert sites["hehua"]["status"] == "normal"
    assert sites["hehua"]["extraction_m3h"] > 0 and sites["hehua"]["age_s"] is not None
    bal = sites["hospital"]["balance"]["1h"]
    assert bal is not None and 35 < bal["deficit_pct"] < 45
    counts = {d["district"]: d for d in body["districts"]}
    assert counts["宛城区"]["sites"] == 2 and counts["宛城区"]["discharge"] == 1 and counts["宛城区"]["online"] == 2
    only = running.get("/api/sites", params={"district": "卧龙区"}).json()["sites"]
    assert [s["id"] for s in only] == ["school"]


def test_site_detail_has_meters_history_alerts(running: Running, hospital_alert: dict[str, object]) -> None:
    s = running.get("/api/sites/hospital").json()
    assert s["name"] == "宛城区人民医院" and {m["id"] for m in s["meters"]} == {"E1", "R1", "R2"}
    assert all(m["latest"]["total_m3"] > 0 for m in s["meters"])
    assert len(s["history"]) > 10 and s["history"][-1]["deficit_m3h"] > 0
    assert any(a["id"] == hospital_alert["id"] for a in s["alerts"])
    assert running.get("/api/sites/nowhere").status_code == 404


def test_readings_and_balance_history_from_influxdb(running: Running, hospital_alert: dict[str, object]) -> None:
    now = running.service.clock.now()
    start = (now - timedelta(hours=3)).isoformat()
    wait_until(lambda: bool(running.get("/api/sites/hehua/readings",
                                        params={"from": start, "to": now.isoformat(), "step": "10m"}).json()["meters"]),
               timeout=30)
    r = running.get("/api/sites/hehua/readings", params={"from": start, "to": now.isoformat(), "step": "10m"}).json()
    assert {m["meter"] for m in r["meters"]} == {"E1", "R1"} and r["step_s"] == 600
    assert all(p["rate_m3h"] > 0 for m in r["meters"] for p in m["points"])
    bad = running.get("/api/sites/hehua/readings", params={"from": "yesterday"})
    assert bad.status_code == 422 and "ISO-8601" in bad.json()["detail"]
    wait_until(lambda: bool(running.get("/api/sites/hospital/balance",
                                        params={"from": start, "to": now.isoformat()}).json()["points"]), timeout=30)
    b = running.get("/api/sites/hospital/balance", params={"from": start, "to": now.isoformat()}).json()
    assert b["points"][-1]["deficit_pct"] > 30 and b["step_s"] == 300


def test_balance_history_has_a_step_like_readings(running: Running, hospital_alert: dict[str, object]) -> None:
    def fine_points() -> list[dict[str, object]]:
        return list(running.get("/api/sites/hospital/balance", params={**span, "step": "5m"}).json()["points"])

    # a span that ended a while ago (data time runs 600× faster): every point in it is in InfluxDB already
    end = running.service.clock.now() - timedelta(minutes=30)
    span = {"from": (end - timedelta(hours=3)).isoformat(), "to": end.isoformat()}
    wait_until(lambda: len(fine_points()) > 4, timeout=60, interval=0.5)
    fine = fine_points()
    hourly = running.get("/api/sites/hospital/balance", params={**span, "step": "1h"})
    assert hourly.status_code == 200 and hourly.json()["step_s"] == 3600
    coarse = hourly.json()["points"]
    assert 1 <= len(coarse) <= 4 < len(fine), (len(coarse), len(fine))
    # each step shows the last balance written in it, labelled with the step's start (as /readings does)
    by_ts = {datetime.fromisoformat(p["ts"]): p for p in fine}
    for p in coarse:
        start = datetime.fromisoformat(p["ts"])
        assert start.timestamp() % 3600 == 0
        last = max(t for t in by_ts if start <= t < start + timedelta(hours=1))
        assert {k: p[k] for k in ("extracted_m3", "deficit_pct")} == \
            {k: by_ts[last][k] for k in ("extracted_m3", "deficit_pct")}
    month = {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat()}
    for params, says in (({**span, "step": "soon"}, "step: "), ({**span, "step": "0s"}, "too fine"),
                         ({**month, "step": "1m"}, "at most 20 000 points")):
        bad = running.get("/api/sites/hospital/balance", params=params)
        assert bad.status_code == 422 and says in bad.json()["detail"], bad.text
    assert running.get("/api/sites/hospital/balance", params={**span, "window": "6h"}).status_code == 422


def test_alert_filters_and_detail(running: Running, hospital_alert: dict[str, object]) -> None:
    alerts = running.get("/api/alerts", params={"kind": "discharge", "district": "宛城区"}).json()["alerts"]
    assert alerts and all(a["district"] == "宛城区" and a["kind"] == "discharge" for a in alerts)
    assert running.get("/api/alerts", params={"kind": "data_quality", "site": "hehua"}).json()["alerts"] == []
    detail = running.get(f"/api/alerts/{hospital_alert['id']}").json()
    for key in ("id", "site", "site_name", "district", "rule", "kind", "severity", "state", "at", "starts_at",
                "ends_at", "summary", "evidence", "transitions"):
        assert key in detail
    assert detail["evidence"]["extracted_m3"] > detail["evidence"]["reinjected_m3"]
    # the summary in every language, rendered from the evidence (the service speaks Chinese)
    assert detail["summaries"]["zh"] == detail["summary"]
    assert detail["summaries"]["en"].startswith("宛城区人民医院: ") and "deficit" in detail["summaries"]["en"]
    assert all(set(t["summaries"]) == {"zh", "en"} for t in detail["transitions"])
    assert [t["state"] for t in detail["transitions"]][:2] in (["pending", "firing"], ["firing"])


def test_viewer_cannot_write(running: Running, hospital_alert: dict[str, object]) -> None:
    for action, body in (("ack", {}), ("notes", {"text": "x"}), ("close", {"outcome": "other"})):
        r = running.post(f"/api/alerts/{hospital_alert['id']}/{action}", body, token="viewer")
        assert r.status_code == 403 and "viewer" in r.json()["detail"]


def test_enforcement_acks_annotates_and_closes_in_its_district_with_an_audit_trail(
        running: Running, hospital_alert: dict[str, object]) -> None:
    aid = hospital_alert["id"]
    r = running.post(f"/api/alerts/{aid}/ack", {"comment": "已派人核查"})
    assert r.status_code == 200 and r.json()["acknowledged"] and r.json()["acked_by"] == "宛城区执法大队"
    r = running.post(f"/api/alerts/{aid}/notes", {"text": "现场发现排水管接入雨水井"})
    assert [n["text"] for n in r.json()["notes"]] == ["已派人核查", "现场发现排水管接入雨水井"]
    r = running.post(f"/api/alerts/{aid}/close", {"outcome": "confirmed_discharge", "text": "已责令整改"})
    assert r.json()["outcome"]["outcome"] == "confirmed_discharge"
    assert r.json()["state"] == "firing", "closing the case does not change what the data says"
    assert running.post(f"/api/alerts/{aid}/notes", {"text": ""}).status_code == 422
    entries = running.get("/api/audit", "admin").json()["entries"]
    mine = [e for e in entries if e["target"] == aid]
    assert [e["action"] for e in mine] == ["ack", "note", "close"]
    assert all(e["who"] == "宛城区执法大队" and e["role"] == "enforcement" and e["at"] for e in mine)
    assert running.get("/api/audit", "wancheng").status_code == 403


def test_enforcement_of_one_district_cannot_see_or_touch_another(running: Running) -> None:
    wait_until(lambda: bool(firing_alerts(running, "school")), timeout=60, interval=0.5)
    other = firing_alerts(running, "school")[0]
    assert [s["id"] for s in running.get("/api/sites", "wancheng").json()["sites"]] == ["hehua", "hospital"]
    assert running.get("/api/sites/school", "wancheng").status_code == 404
    assert running.get(f"/api/alerts/{other['id']}", "wancheng").status_code == 404
    assert all(a["district"] == "宛城区" for a in running.get("/api/alerts", "wancheng").json()["alerts"])
    assert running.post(f"/api/alerts/{other['id']}/ack", {}).status_code == 404


def test_stream_sends_live_flows_of_visible_sites_only(running: Running) -> None:
    with requests.get(running.url + "/api/stream", headers={"Authorization": "Bearer enforce-wancheng-0123456789"},
                      stream=True, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        seen: set[str] = set()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        event = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "flow":
                seen.add(json.loads(line[6:])["site"])
            if seen >= {"hehua", "hospital"} or datetime.now(UTC) > deadline:
                break
    assert seen >= {"hehua", "hospital"} and "school" not in seen


def test_secrets_never_appear_in_responses(running: Running) -> None:
    blob = running.get("/openapi.json", None).text + running.get("/api/me", "admin").text + \
        running.get("/api/sites", "admin").text
    assert not any(t in blob for t in ("viewer-token-0123456789", "enforce-wancheng-0123456789",
                                       "admin-token-0123456789"))


def test_daily_report_download_is_scoped_to_the_callers_districts(running: Running,
                                                                  hospital_alert: dict[str, object]) -> None:
    day = running.service.clock.now().astimezone(running.config.tz).date().isoformat()
    r = running.get("/api/reports/daily", params={"date": day, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8-sig")
    assert "宛城区人民医院" in text and "卧龙区第一中学" in text
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    mine = running.get("/api/reports/daily", "wancheng", params={"date": day}).content.decode("utf-8-sig")
    assert "宛城区人民医院" in mine and "卧龙区第一中学" not in mine
    assert running.get("/api/reports/daily", "wancheng", params={"date": day, "district": "卧龙区"}).status_code == 404
    html = running.get("/api/reports/daily", params={"date": day, "format": "html", "language": "en"})
    assert html.headers["content-type"].startswith("text/html") and "<html" in html.text
    assert running.get("/api/reports/daily", params={"date": "yesterday"}).status_code == 422


def test_enforcement_of_one_district_cannot_annotate_close_or_read_the_history_of_another(running: Running) -> None:
    wait_until(lambda: bool(firing_alerts(running, "school")), timeout=60, interval=0.5)
    other = firing_alerts(running, "school")[0]
    assert running.post(f"/api/alerts/{other['id']}/notes", {"text": "越权"}).status_code == 404
    assert running.post(f"/api/alerts/{other['id']}/close", {"outcome": "other"}).status_code == 404
    # a site or district of another district answers as an unknown one does
    for params in ({"site": "school"}, {"district": "卧龙区"}):
        refused = running.get("/api/alerts", "wancheng", params=params)
        assert refused.status_code == 422 and "unknown" in refused.json()["detail"], refused.text
    for path in ("/api/sites/school/readings", "/api/sites/school/balance"):
        assert running.get(path, "wancheng", params={"from": "2026-01-01T00:00:00Z"}).status_code == 404
    after = running.get(f"/api/alerts/{other['id']}", "admin").json()
    assert not after["acknowledged"] and after["state"] == "firing"
    assert not any(e["target"] == other["id"] for e in running.get("/api/audit", "admin").json()["entries"])


def test_history_without_from_or_to_answers_the_last_day_of_data(running: Running,
                                                                   hospital_alert: dict[str, object]) -> None:
    # the data clock runs 600× faster than the wall: the default window ends at the newest data, not at now
    newest = running.service.live.last_seen("hehua")
    assert newest is not None
    wait_until(lambda: bool(running.get("/api/sites/hehua/readings").json()["meters"]), timeout=30)
    r = running.get("/api/sites/hehua/readings")
    assert r.status_code == 200, r.text
    body = r.json()
    start, stop = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert stop - start == timedelta(hours=24) and stop >= newest
    assert {m["meter"] for m in body["meters"]} == {"E1", "R1"}
    b = running.get("/api/sites/hospital/balance", params={"step": "1h"})
    assert b.status_code == 200 and b.json()["points"], b.text
    only_to = running.get("/api/sites/hehua/readings", params={"to": body["to"]}).json()
    assert only_to["from"] == body["from"]


@pytest.mark.parametrize(("path", "params", "says"), [
    ("/api/alerts", {"state": "bogus"}, "state: Input should be 'pending', 'firing' or 'resolved' (got 'bogus')"),
    ("/api/alerts", {"kind": "leak"}, "kind: Input should be"),
    ("/api/alerts", {"severity": "huge"}, "severity: Input should be"),
    ("/api/alerts", {"district": "火星区"}, "district: unknown district '火星区'"),
    ("/api/alerts", {"site": "nowhere"}, "site: unknown site 'nowhere'"),
    ("/api/sites", {"district": "火星区"}, "district: unknown district"),
    ("/api/sites/hehua/balance", {"window": "6h"}, "window: 1h or 24h"),
    ("/api/reports/daily", {"date": "2026-01-01", "format": "pdf"}, "format: Input should be 'csv'"),
])
def test_unknown_filter_values_are_422_with_a_readable_message(running: Running, path: str,
                                                               params: dict[str, str], says: str) -> None:
    r = running.get(path, params=params)
    assert r.status_code == 422 and says in r.json()["detail"], r.text


@pytest.mark.parametrize(("path", "params", "token", "status", "zh", "en"), [
    ("/api/alerts", {"district": "火星区"}, "viewer", 422, "district：未知辖区 '火星区'", "district: unknown district"),
    ("/api/alerts", {"state": "bogus"}, "viewer", 422, "请求参数不合规", "state: Input should be"),
    ("/api/sites/nowhere", {}, "viewer", 404, "没有站点 'nowhere'", "no site 'nowhere'"),
    ("/api/sites/hehua/readings", {"from": "2026-05-01T08:00"}, "viewer", 422, "请写明时区偏移",
     "give a time zone offset"),
    ("/api/audit", {}, "viewer", 403, "viewer 角色无权执行此操作", "the viewer role may not do this"),
])
def test_a_refusal_says_what_is_wrong_in_chinese_then_english(running: Running, path: str, params: dict[str, str],
                                                              token: str, status: int, zh: str, en: str) -> None:
    r = running.get(path, token, params=params)
    zh_part, _, en_part = r.json()["detail"].partition(" / ")
    assert r.status_code == status and zh in zh_part and en in en_part, r.text


def test_every_time_of_an_answer_is_in_the_configured_zone(running: Running,
                                                           hospital_alert: dict[str, object]) -> None:
    stamps = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z))"')
    texts = [running.get(p, "admin").text for p in (
        "/api/sites", "/api/sites/hospital", f"/api/alerts/{hospital_alert['id']}", "/api/alerts",
        "/api/sites/hospital/readings", "/api/sites/hospital/balance", "/api/audit", "/api/incidents")]
    found = [t for text in texts for t in stamps.findall(text)]
    assert len(found) > 50
    assert {t[-6:] for t in found} == {"+08:00"}, {t for t in found if not t.endswith("+08:00")}


def test_openapi_declares_bearer_auth_and_a_typed_answer_for_every_route(running: Running) -> None:
    spec = running.get("/openapi.json", None).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = op["responses"].get("200") or op["responses"].get("201")
            content = ok.get("content", {})
            if "application/json" in content:  # a JSON answer names its model
                assert content["application/json"].get("schema", {}).get("$ref"), (method, path)
            else:  # a file or a stream names its media type
                assert content or path == "/metrics", (method, path)
            if path.startswith("/api/"):
                assert op.get("security") == [{"bearer": []}], (method, path)


def test_the_evidence_public_key_is_served_and_matches_the_key_in_state_dir(running: Running) -> None:
    from gshp.evidence import KEY_FILE, PublicKey, ServiceKey
    r = running.get("/api/evidence/key")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-pem-file")
    served = PublicKey.from_pem(r.content)
    path = running.config.state_dir / KEY_FILE
    assert (path.stat().st_mode & 0o777) == 0o600
    assert served.raw == ServiceKey.load_or_create(path).public.raw
    assert r.headers["X-Key-Fingerprint"] == served.fingerprint and b"PRIVATE" not in r.content
    assert running.get("/api/evidence/key", None).status_code == 401


def test_arrival_per_meter_site_and_district_with_district_visibility(running: Running) -> None:
    wait_until(lambda: running.get("/api/sites/hehua/arrival").json()["arrived"] > 0, timeout=60, interval=0.5)
    body = running.get("/api/sites/hehua/arrival").json()
    assert [m["id"] for m in body["meters"]] == ["E1", "R1"]
    assert body["expected"] == sum(m["expected"] for m in body["meters"]) > 0
    assert body["arrived"] == sum(m["arrived"] for m in body["meters"])
    for m in body["meters"]:
        assert m["interval_s"] == 60 and 0 <= m["arrived"] <= m["expected"]
        assert all(set(gap) == {"from", "to"} and gap["from"] < gap["to"] for gap in m["missing"])
    assert running.get("/api/sites/hehua/arrival", params={"date": "2026-13-01"}).status_code == 422
    assert running.get("/api/sites/school/arrival", "wancheng").status_code == 404  # another district's
    sites = running.get("/api/sites").json()
    by_district: dict[str, list[int]] = {}
    for s in sites["sites"]:
        a = s["arrival"]
        totals = by_district.setdefault(s["district"], [0, 0])
        totals[0] += a["expected"]
        totals[1] += a["arrived"]
    for d in sites["districts"]:
        assert [d["arrival"]["expected"], d["arrival"]["arrived"]] == by_district[d["district"]]
