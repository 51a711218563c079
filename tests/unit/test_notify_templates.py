"""Default templates in Chinese and English carry what enforcement needs about an incident; users can
override them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerting.model import IncidentNotice
from rules.notify import NotifyError, parse_event, sample_event
from rules.notify.templates import Renderer


def notice(change: str = "opened", **incident: Any) -> IncidentNotice:
    d = sample_event()
    d["change"], d["at"] = change, "2026-07-01T02:40:00+00:00"
    d["incident"].update({"started_at": "2026-07-01T02:00:00+00:00", "first_firing_at": "2026-07-01T02:30:00+00:00",
                          "updated_at": "2026-07-01T02:40:00+00:00", **incident})
    return parse_event(d)


EVENT = notice()


@pytest.mark.parametrize("name", ["markdown", "text", "html"])
def test_chinese_default_names_site_district_volume_band_onset_and_incident_link(name: str) -> None:
    out = Renderer("zh", public_url="https://board.example.gov.cn/").render(name, [EVENT])
    for part in ("向阳荷花广场", "宛城区", "26.7 m³", "22.1 m³", "31.3 m³", "39.8%",
                 "2026-07-01 10:00",  # the estimated onset, in Asia/Shanghai
                 "https://board.example.gov.cn/incidents/sample-hehua-plaza", "疑似外排", "新事件"):
        assert part in out, (name, part)


def test_english_default_and_configured_time_zone() -> None:
    r = Renderer("en", tz="UTC", public_url="https://b.example")
    out = r.render("text", [EVENT])
    assert "Estimated discharge: 26.7 m³ (band 22.1 m³ – 31.3 m³)" in out
    assert "Since (estimated onset): 2026-07-01 02:00 (UTC)" in out and "suspected discharge" in out
    assert "Incident: https://b.example/incidents/sample-hehua-plaza" in out
    assert r.render("subject", [EVENT]).startswith("[OPENED high] 宛城区 向阳荷花广场: suspected discharge, about 26.7")


def test_escalated_resolved_closed_reminder_and_an_incident_without_volume() -> None:
    zh = Renderer("zh")
    assert zh.render("subject", [notice("escalated", severity="critical")]).startswith("[升级·严重]")
    resolved = notice("resolved", state="resolved", ended_at="2026-07-01T05:00:00+00:00")
    assert zh.render("subject", [resolved]).startswith("[已结束·高]")
    assert "结束时间：2026-07-01 13:00" in zh.render("text", [resolved])
    closed = parse_event({**resolved.to_dict(), "change": "case_closed", "outcome": "confirmed_discharge"})
    assert "结案结论：confirmed_discharge" in zh.render("text", [closed])
    assert zh.render("subject", [EVENT], repeat=2).startswith("[重复提醒]")
    evasion = notice(kind="evasion", volume_m3=None, peak_deficit_pct=None, mean_deficit_pct=None,
                     rules={"reinjection_silent": {"meters": ["R1"]}}, summary={"zh": "回灌表R1无数据，抽水仍在进行"})
    out = zh.render("markdown", [evasion])
    assert "疑似规避监测" in out and "估计外排量" not in out and "回灌表R1无数据" in out
    assert "查看事件详情" not in out  # no public_url, no link


def test_html_and_markdown_escape_incident_text() -> None:
    evil = notice(site_name="<script>x</script>")
    assert "<script>" not in Renderer("zh").render("html", [evil])
    assert r"\<script\>x\</script\>" in Renderer("zh").render("markdown", [evil])  # text, not markup


def test_a_template_dir_overrides_single_templates(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "subject.j2").write_text("{{ notices[0].district }}执法：{{ notices[0].site_name }}",
                                                encoding="utf-8")
    r = Renderer("zh", template_dir=tmp_path)
    r.check()
    assert r.render("subject", [EVENT]) == "宛城区执法：向阳荷花广场"
    assert "估计外排量" in r.render("text", [EVENT])  # not overridden: the shipped one


def test_a_broken_override_fails_at_start_up_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "markdown.j2").write_text("{{ notices[0].nope }}", encoding="utf-8")
    with pytest.raises(NotifyError, match=r"en/markdown\.j2"):
        Renderer("en", template_dir=tmp_path).check()
    (tmp_path / "en" / "markdown.j2").write_text("{% for %}", encoding="utf-8")
    with pytest.raises(NotifyError, match=r"en/markdown\.j2 \(line 1\)"):
        Renderer("en", template_dir=tmp_path).check()
    with pytest.raises(NotifyError, match="not a directory"):
        Renderer("en", template_dir=tmp_path / "missing")
