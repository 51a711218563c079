import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alerting.model import Alert, AlertKind, AlertState
from rules.events import summaries, summarize, window_words
from rules.settings import Language, Severity

EV = {"window": "1h", "extracted_m3": 120.0, "reinjected_m3": 100.0, "deficit_m3": 20.0,
      "deficit_pct": 16.6667,
      "threshold_pct": 6.0}


def test_chinese_balance_summary_reads_like_the_bureau_writes_it():
    s = summarize("balance", "balance_hour", "向阳荷花广场", EV, Language.ZH, "firing")
    assert s == "向阳荷花广场 近1小时抽水120.0 m³，回灌100.0 m³，差额20.0 m³ (16.7%)"


def test_english_balance_summary():
    s = summarize("balance", "balance_hour", "Hehua Plaza", EV, Language.EN, "firing")
    assert s == "Hehua Plaza: last 1h extracted 120.0 m³, reinjected 100.0 m³, deficit 20.0 m³ (16.7%)"


def test_resolved_summary_says_so():
    assert summarize("balance", "balance_hour", "站", EV, Language.ZH, "resolved").startswith("已恢复：")
    assert summarize("balance", "balance_hour", "S", EV, Language.EN, "resolved").startswith("Resolved")


def test_summaries_render_every_language_from_the_rule_and_its_evidence():
    both = summaries("balance_hour", "向阳荷花广场", EV, "firing")
    assert both == {"zh": "向阳荷花广场 近1小时抽水120.0 m³，回灌100.0 m³，差额20.0 m³ (16.7%)",
                    "en": "向阳荷花广场: last 1h extracted 120.0 m³, reinjected 100.0 m³, deficit 20.0 m³ (16.7%)"}
    seq = {**EV, "baseline_pct": 1.0, "cusum_pct_h": 30.0}
    assert summaries("balance_sequential", "S", seq, "firing")["en"].startswith(
        "S: deficit persistently above the site's baseline")
    assert summaries("reinjection_silent", "S", {"meters": ["R1"]}, "resolved") == {
        "zh": "已恢复：S 抽水运行中回灌流量计无数据（R1）",
        "en": "Resolved — S: reinjection meter silent while extraction runs (R1)"}


def test_permit_and_calibration_alerts_are_summarised_in_words_when_re_rendered():
    cal = {"rule": "calibration_due:E1", "meters": ["E1"], "meter": "E1", "next_due": "2026-06-01"}
    assert summaries("calibration_due:E1", "S", cal, "firing") == {
        "zh": "S 流量计检定证书过期：E1，应于2026-06-01前检定",
        "en": "S: meter calibration past due — E1, next due 2026-06-01"}
    rate = {"rule": "over_rate", "rate_m3h": 172.0, "max_rate_m3h": 150.0}
    assert summaries("over_rate", "S", rate, "firing")["en"].endswith("172.0 m³/h, permitted 150 m³/h")


def test_data_quality_summary_names_the_meters():
    ev = {"meters": ["R1", "R2"]}
    s = summarize("reinjection_silent", "reinjection_silent", "站", ev, Language.ZH, "firing")
    assert "回灌流量计无数据" in s and "R1、R2" in s


def test_window_words():
    assert window_words(timedelta(minutes=15), Language.ZH) == "15分钟"
    assert window_words(timedelta(hours=6), Language.ZH) == "6小时"
    assert window_words(timedelta(hours=6), Language.EN) == "6h"


def test_event_json_has_the_one_shape_with_offset_times():
    tz = ZoneInfo("Asia/Shanghai")
    at = datetime(2026, 5, 5, 0, 0, tzinfo=UTC).astimezone(tz)
    e = Alert("abc", "hehua", "向阳荷花广场", "宛城区", "balance_hour", AlertKind.DISCHARGE,
              Severity.HIGH, AlertState.FIRING, at, at, None, "s", EV)
    d = json.loads(e.to_json())
    assert list(d) == ["id", "site", "site_name", "district", "rule", "kind", "severity", "state", "at",
                       "starts_at", "ends_at", "summary", "evidence"]
    assert d["at"] == "2026-05-05T08:00:00+08:00"
    assert d["kind"] == "discharge" and d["ends_at"] is None
    assert "向阳荷花广场" in e.to_json()  # not \u-escaped


def test_evidence_without_its_figures_gives_the_stored_summary_in_every_language():
    assert summaries("balance_24h", "S", {"deficit_m3": 1014.0}, "firing", "外排") == {"zh": "外排", "en": "外排"}
