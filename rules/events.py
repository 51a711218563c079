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
    "data_replayed": ("数据疑似重放：读数与此前某时段完全相同", "data replayed: readings repeat an earlier period"),
    "exact_balance": ("抽回水量平衡得过于精确（回灌数据疑似由抽水数据计算得出）",
                      "balance implausibly exact (reinjection looks computed from extraction)"),
    "data_synthetic": ("数据疑似人工生成：瞬时流量过于平滑，不像真实超声波流量计",
                       "synthetic data: rate too smooth for a real ultrasonic meter"),
}

_COMPLIANCE_WORDS: dict[str, tuple[str, str]] = {
    "over_rate": ("取水流量超过许可最大取水量", "extraction rate above the permitted maximum"),
    "quota_projection": ("年度取水量将超过许可水量", "the year's extraction heads over the permitted quota"),
    "sealed_pumping": ("停用或封停的井在取水", "extraction at a suspended or sealed site"),
    "permit_expired": ("取水许可过期后仍在取水", "extraction after the permit expired"),
    "calibration_due": ("流量计检定证书过期", "meter calibration past due"),
}

_CHANGE_WORDS: dict[str, tuple[str, str]] = {
    "serial_changed": ("序列号", "serial number"),
    "unit_changed": ("单位", "unit"),
    "multiplier_changed": ("累积倍率", "totalizer multiplier"),
    "scale_changed": ("仪表系数", "user scale factor"),
    "rescaled": ("累计流量断线后跳变（超出仪表能通过的水量）", "totalizer jumped across a gap beyond the meter's flow"),
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
    zh, en = _BALANCE_WORDS.get(rule) or _DQ_WORDS.get(rule) or _COMPLIANCE_WORDS.get(rule.split(":")[0]) or (
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


def _data_replayed(name: str, ev: Mapping[str, Any], lang: Language) -> str:
    """「站 数据疑似重放…：R1 与 R1 的 1d 前读数一致（4 段）」"""
    zh, en = _DQ_WORDS["data_replayed"]
    parts = []
    for meter, r in (ev.get("replays") or {}).items():
        src, shift, n = r["copied_from"], r["shift"], r["matching_stretches"]
        if lang is Language.EN:
            parts.append(f"{meter} repeats {src} shifted by {shift} ({n} stretches)")
        else:
            parts.append(f"{meter} 与 {src} {shift} 前的读数一致（{n} 段）")
    if lang is Language.EN:
        return f"{name}: {en} — " + "; ".join(parts)
    return f"{name} {zh}：" + "；".join(parts)


_STATUS_WORDS = {"approved": "已批准", "construction": "施工中", "operating": "运行中", "suspended": "暂停取水",
                 "sealed": "已封停"}


def _m3(v: float) -> str:
    return f"{v:,.0f}"


def _compliance(name: str, ev: Mapping[str, Any], lang: Language) -> str:
    """「站 取水流量超过许可最大取水量：172.0 m³/h，许可150 m³/h」: what a permit rule found, with its figures."""
    rule = str(ev.get("rule", ""))
    zh, en_text = _COMPLIANCE_WORDS[rule.split(":")[0]]
    en = lang is Language.EN
    if rule == "over_rate":
        r, mx = ev["rate_m3h"], ev["max_rate_m3h"]
        detail = f"{r:.1f} m³/h, permitted {mx:g} m³/h" if en else f"{r:.1f} m³/h，许可{mx:g} m³/h"
    elif rule == "quota_projection":
        used, quota, proj = ev["extracted_m3"], ev["annual_quota_m3"], ev.get("projected_m3")
        p = "—" if proj is None else _m3(proj)
        detail = (f"{_m3(used)} m³ used ({ev['used_pct']:.1f}%), projected {p} m³ of {_m3(quota)} m³" if en
                  else f"已取水{_m3(used)} m³（{ev['used_pct']:.1f}%），预计全年{p} m³，许可{_m3(quota)} m³")
    elif rule.startswith("calibration_due:"):
        m, due = ev["meter"], ev["next_due"]
        detail = f"{m}, next due {due}" if en else f"{m}，应于{due}前检定"
    else:
        r, st = ev.get("rate_m3h"), str(ev.get("status"))
        st = st if en else _STATUS_WORDS.get(st, st)
        rate = "—" if r is None else f"{r:.1f} m³/h"
        expired = rule == "permit_expired"
        detail = (f"{rate}, permit {st}" + (f", valid to {ev['valid_to']}" if expired else "") if en
                  else f"{rate}，许可状态{st}" + (f"，有效期至{ev['valid_to']}" if expired else ""))
    return f"{name}: {en_text} — {detail}" if en else f"{name} {zh}：{detail}"


def summarize(rule_family: str, rule: str, site_name: str, evidence: Mapping[str, Any], lang: Language,
              state: str) -> str:
    template = SUMMARIES.get(rule_family) or _quality(rule)
    text = template(site_name, evidence, lang)
    if state == "resolved":
        return ("Resolved — " if lang is Language.EN else "已恢复：") + text
    return text


def rule_family(rule: str) -> str:
    """The summary template of a rule id: `balance_sequential` the sequential test's, any other `balance_*`
    window the balance one, a permit or calibration rule the compliance one, a data-quality rule its own."""
    if rule == "balance_sequential":
        return "sequential"
    if rule.split(":")[0] in _COMPLIANCE_WORDS:
        return "compliance"
    return "balance" if rule.startswith("balance_") else rule


def summaries(rule: str, site_name: str, evidence: Mapping[str, Any], state: str,
              stored: str = "") -> dict[str, str]:
    """An alert's summary in every language, rendered from its stored evidence; evidence that lacks a
    figure (a record written by an earlier release) gives the `stored` summary in every language."""
    try:
        return {lang.value: summarize(rule_family(rule), rule, site_name, evidence, lang, state)
                for lang in Language}
    except (KeyError, TypeError, ValueError):
        return {lang.value: stored for lang in Language}


SUMMARIES["balance"] = _balance
SUMMARIES["sequential"] = _sequential
SUMMARIES["meter_changed"] = _meter_changed
SUMMARIES["data_replayed"] = _data_replayed


SUMMARIES["compliance"] = _compliance
