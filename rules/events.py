"""Alert summaries in Chinese or English (the alert itself is `alerting.model.Alert`).

Summaries come from per-rule templates registered in `SUMMARIES`; a rule without its own template gets
the generic data-quality sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from alerting.model import Language, iso
from collector.duration import format_duration, parse_duration

__all__ = ["SUMMARIES", "iso", "rule_family", "rule_words", "summaries", "summarize", "window_words"]


def window_words(td: timedelta, lang: Language) -> str:
    """`1h` → 「1小时」 / "1 h"."""
    s = int(td.total_seconds())
    if lang is Language.EN:
        return format_duration(td)
    if s % 86400 == 0:
        return f"{s // 86400}天"
    if s % 3600 == 0:
        return f"{s // 3600}小时"
    if s % 60 == 0:
        return f"{s // 60}分钟"
    return f"{s}秒"


Template = Callable[[str, Mapping[str, Any], Language], str]
SUMMARIES: dict[str, Template] = {}


def _balance(name: str, ev: Mapping[str, Any], lang: Language) -> str:
    w = window_words(parse_duration(ev["window"]), lang)
    e, r, d, p = ev["extracted_m3"], ev["reinjected_m3"], ev["deficit_m3"], ev["deficit_pct"]
    pct = f"{p:.1f}%" if p is not None else "—"
    if lang is Language.EN:
        return f"{name}: last {w} extracted {e:.1f} m³, reinjected {r:.1f} m³, deficit {d:.1f} m³ ({pct})"
    return f"{name} 近{w}抽水{e:.1f} m³，回灌{r:.1f} m³，差额{d:.1f} m³ ({pct})"


def _sequential(name: str, ev: Mapping[str, Any], lang: Language) -> str:
    p, b = ev["deficit_pct"], ev["baseline_pct"]
    s = ev["cusum_pct_h"]
    if lang is Language.EN:
        return (f"{name}: deficit persistently above the site's baseline — last interval {p:.1f}% vs "
                f"baseline {b:.1f}% (cumulative excess {s:.1f} %·h)")
    return f"{name} 差额持续高于本站基线：最近时段差额{p:.1f}%，基线{b:.1f}%（累计超出{s:.1f} %·h）"


_DQ_WORDS: dict[str, tuple[str, str]] = {
    "meter_offline": ("流量计离线", "meter offline"),
    "reinjection_silent": ("抽水运行中回灌流量计无数据", "reinjection meter silent while extraction runs"),
    "totalizer_frozen": ("累计流量停止变化但瞬时流量不为零", "totalizer frozen while flow is reported"),
    "totalizer_reset": ("累计流量回退或重置", "totalizer reset or went backwards"),
    "reverse_flow": ("瞬时流量为负（反向流动）", "reverse flow (negative rate)"),
    "signal_quality": ("信号质量差或仪表报错", "poor signal quality or meter error"),
    "discharge_flow": ("外排管道流量计有流量", "discharge-pipe meter shows flow"),
    "meter_changed": ("流量计被更换或设置被改动", "meter swapped or its settings changed"),
    "low_arrival": ("到报率偏低（数据未按时到达）", "low arrival rate (expected readings missing)"),
}

_CHANGE_WORDS: dict[str, tuple[str, str]] = {
    "serial_changed": ("序列号", "serial number"),
    "unit_changed": ("单位", "unit"),
    "multiplier_changed": ("累积倍率", "totalizer multiplier"),
    "scale_changed": ("仪表系数", "user scale factor"),
}


_BALANCE_WORDS: dict[str, tuple[str, str]] = {
    "balance_gross": ("短时大量水量差额（15分钟）", "gross deficit (15 min)"),
    "balance_hour": ("1小时水量差额", "1-hour deficit"),
    "balance_shift": ("6小时水量差额", "6-hour deficit"),
    "balance_day": ("24小时水量差额", "24-hour deficit"),
    "balance_sequential": ("差额持续高于本站基线（CUSUM）", "deficit persistently above baseline (CUSUM)"),
}


def rule_words(rule: str, lang: Language) -> str:
    """What a rule found, in a few words: a balance window, a data-quality or evasion finding (another
    configured balance window by its name; any other rule by its id)."""
    zh, en = _BALANCE_WORDS.get(rule) or _DQ_WORDS.get(rule) or (
        (f"水量差额（{rule[8:]}）", f"deficit ({rule[8:]})") if rule.startswith("balance_") else (rule, rule))
    return en if lang is Language.EN else zh


def _quality(rule: str) -> Template:
    zh, en = _DQ_WORDS.get(rule, (rule, rule))

    def render(name: str, ev: Mapping[str, Any], lang: Language) -> str:
        meters = "、".join(ev.get("meters", ())) if lang is Language.ZH else ", ".join(ev.get("meters", ()))
        if lang is Language.EN:
            return f"{name}: {en}" + (f" ({meters})" if meters else "")
        return f"{name} {zh}" + (f"（{meters}）" if meters else "")

    return render


def _number(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _meter_changed(name: str, ev: Mapping[str, Any], lang: Language) -> str:
    """「站 流量计被更换或设置被改动：R1 累积倍率（total_multiplier）3 → 4」"""
    changes = ev.get("changes") or ()
    if not changes:
        return _quality("meter_changed")(name, ev, lang)
    en = lang is Language.EN
    parts = []
    for c in changes:
        zh_word, en_word = _CHANGE_WORDS.get(c["kind"], (c["kind"], c["kind"]))
        word = en_word if en else zh_word
        field = f" ({c['field']}) " if en else f"（{c['field']}）"
        parts.append(f"{c['meter']} {word}{field}{_number(c['old'])} → {_number(c['new'])}")
    zh, en_text = _DQ_WORDS["meter_changed"]
    if en:
        return f"{name}: {en_text} — " + "; ".join(parts)
    return f"{name} {zh}：" + "；".join(parts)


def summarize(rule_family: str, rule: str, site_name: str, evidence: Mapping[str, Any], lang: Language,
              state: str) -> str:
    template = SUMMARIES.get(rule_family) or _quality(rule)
    text = template(site_name, evidence, lang)
    if state == "resolved":
        return ("Resolved — " if lang is Language.EN else "已恢复：") + text
    return text


def rule_family(rule: str) -> str:
    """The summary template of a rule id: `balance_sequential` the sequential test's, any other `balance_*`
    window the balance one, a data-quality rule its own."""
    if rule == "balance_sequential":
        return "sequential"
    return "balance" if rule.startswith("balance_") else rule


def summaries(rule: str, site_name: str, evidence: Mapping[str, Any], state: str) -> dict[str, str]:
    """An alert's summary in every language, rendered from its stored evidence."""
    return {lang.value: summarize(rule_family(rule), rule, site_name, evidence, lang, state) for lang in Language}


SUMMARIES["balance"] = _balance
SUMMARIES["sequential"] = _sequential
SUMMARIES["meter_changed"] = _meter_changed
