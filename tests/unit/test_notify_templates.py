"""Default templates in Chinese and English carry what enforcement needs; users can override them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.notify import NotifyError, parse_event, sample_event
from rules.notify.templates import Renderer

EVENT = parse_event({**sample_event(), "at": "2026-07-01T02:40:00+00:00", "starts_at": "2026-07-01T02:00:00+00:00"})


@pytest.mark.parametrize("name", ["markdown", "text", "html"])
def test_chinese_default_has_site_district_window_volumes_since_and_link(name: str) -> None:
    out = Renderer("zh", public_url="https://board.example.gov.cn/").render(name, [EVENT])
    for part in ("向阳荷花广场", "宛城区", "1h", "120.0 m³", "100.0 m³", "20.0 m³", "16.7%", "5.0%",
                 "2026-07-01 10:00",  # since when, in Asia/Shanghai
                 "https://board.example.gov.cn/sites/hehua-plaza", "疑似外排"):
        assert part in out, (name, part)


def test_english_default_and_configured_time_zone() -> None:
    r = Renderer("en", tz="UTC", public_url="https://b.example")
    out = r.render("text", [EVENT])
    assert "Extracted: 120.0 m³" in out and "Deficit: 20.0 m³ (16.7%" in out
    assert "Since: 2026-07-01 02:00 (UTC)" in out and "suspected discharge" in out
    assert r.render("subject", [EVENT]).startswith("[FIRING critical] 宛城区 向阳荷花广场")


def test_resolved_reminder_and_data_quality_without_volumes() -> None:
    resolved = parse_event({**EVENT.to_json(), "state": "resolved", "ends_at": "2026-07-01T05:00:00+00:00"})
    zh = Renderer("zh")
    assert zh.render("subject", [resolved]).startswith("[已恢复·严重]")
    assert "结束时间：2026-07-01 13:00" in zh.render("text", [resolved])
    assert zh.render("subject", [EVENT], repeat=2).startswith("[重复提醒]")
    dq = parse_event({**EVENT.to_json(), "kind": "data_quality", "rule": "reinjection_silent",
                      "evidence": {"window": "20m", "meter": "R1"}, "summary": "回灌表R1无数据，抽水仍在进行"})
    out = zh.render("markdown", [dq])
    assert "数据质量" in out and "抽水量" not in out and "回灌表R1无数据" in out
    assert "查看站点" not in out  # no public_url, no link


def test_html_and_markdown_escape_event_text() -> None:
    evil = parse_event({**EVENT.to_json(), "site_name": "<script>x</script>"})
    assert "<script>" not in Renderer("zh").render("html", [evil])
    assert r"\<script\>x\</script\>" in Renderer("zh").render("markdown", [evil])  # text, not markup


def test_a_template_dir_overrides_single_templates(tmp_path: Path) -> None:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "subject.j2").write_text("{{ alerts[0].district }}执法：{{ alerts[0].site_name }}",
                                                encoding="utf-8")
    r = Renderer("zh", template_dir=tmp_path)
    r.check()
    assert r.render("subject", [EVENT]) == "宛城区执法：向阳荷花广场"
    assert "抽水量" in r.render("text", [EVENT])  # not overridden: the shipped one


def test_a_broken_override_fails_at_start_up_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "markdown.j2").write_text("{{ alerts[0].nope }}", encoding="utf-8")
    with pytest.raises(NotifyError, match=r"en/markdown\.j2"):
        Renderer("en", template_dir=tmp_path).check()
    (tmp_path / "en" / "markdown.j2").write_text("{% for %}", encoding="utf-8")
    with pytest.raises(NotifyError, match=r"en/markdown\.j2 \(line 1\)"):
        Renderer("en", template_dir=tmp_path).check()
    with pytest.raises(NotifyError, match="not a directory"):
        Renderer("en", template_dir=tmp_path / "missing")
