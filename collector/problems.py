"""The words of configuration problems: every text in Chinese and English (`ZhEn`), pydantic's own errors
translated by their type (`error_text`), the words for a setting that names an id nothing defines, and a
planning problem that also says which meter and which of its settings it is about."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_core import ErrorDetails

__all__ = ["KNOWN_ZH", "ZH_ERRORS", "MeterProblem", "ZhEn", "error_text", "followed", "unknown_id"]


class ZhEn(str):
    """A text in both languages, written `中文 / English` (`中文）/ English` after a closing bracket), that
    keeps its halves so what follows it (a did-you-mean, the value given) goes into each language
    (`followed`)."""

    zh: str
    en: str

    def __new__(cls, zh: str, en: str) -> ZhEn:
        self = super().__new__(cls, f"{zh}{'' if zh.endswith('）') else ' '}/ {en}")
        self.zh, self.en = zh, en
        return self

    def __getnewargs__(self) -> tuple[str, str]:  # type: ignore[override]
        return self.zh, self.en


def followed(text: str, zh: str, en: str) -> str:
    """`text` with `zh` after its Chinese and `en` after its English (after the whole of an English text)."""
    return ZhEn(text.zh + zh, text.en + en) if isinstance(text, ZhEn) else text + en


KNOWN_ZH = "（已有："
"""Where an `unknown_id` message lists the known ids in Chinese."""


def unknown_id(zh: str, en: str, known: Iterable[str]) -> str:
    """In Chinese and English: the setting names no `en` (`zh`), and the ids that are defined — as
    `(known: a, b)`, from which the config loader offers a did-you-mean."""
    ids = sorted(set(known))
    return ZhEn(f"{zh}{KNOWN_ZH}{'、'.join(ids) or '无'}）",
                f"names no {en} (known: {', '.join(ids) or 'none are defined'})")


ZH_ERRORS: Mapping[str, str] = {
    "missing": "为必填项",
    "extra_forbidden": "不是已知的设置项",
    "literal_error": "须为 {expected} 之一",
    "enum": "须为 {expected} 之一",
    "union_tag_invalid": "须为 {expected_tags} 之一",
    "union_tag_not_found": "为必填项（它决定适用哪些设置）",
    "greater_than": "须大于 {gt}",
    "greater_than_equal": "须大于或等于 {ge}",
    "less_than": "须小于 {lt}",
    "less_than_equal": "须小于或等于 {le}",
    "multiple_of": "须为 {multiple_of} 的倍数",
    "finite_number": "须为有限的数",
    "string_too_short": "至少须有 {min_length} 个字符",
    "string_too_long": "至多可有 {max_length} 个字符",
    "too_short": "至少须有 {min_length} 项",
    "too_long": "至多可有 {max_length} 项",
    "string_pattern_mismatch": "不符合规定的格式",
    "string_type": "须为文本",
    "int_type": "须为整数",
    "int_parsing": "须为整数",
    "int_from_float": "须为整数，不能有小数部分",
    "float_type": "须为数",
    "float_parsing": "须为数",
    "bool_type": "须为 true 或 false",
    "bool_parsing": "须为 true 或 false",
    "list_type": "须为列表",
    "tuple_type": "须为列表",
    "set_type": "须为列表",
    "dict_type": "须为映射（键: 值）",
    "model_type": "须为设置项的映射（键: 值）",
    "model_attributes_type": "须为设置项的映射（键: 值）",
    "datetime_type": "须为带时区的日期时间，如 2026-05-01T08:00:00+08:00",
    "datetime_parsing": "须为带时区的日期时间，如 2026-05-01T08:00:00+08:00",
    "datetime_from_date_parsing": "须为带时区的日期时间，如 2026-05-01T08:00:00+08:00",
    "date_type": "须为日期，如 2026-05-01",
    "date_parsing": "须为日期，如 2026-05-01",
    "date_from_datetime_parsing": "须为日期，如 2026-05-01",
    "path_type": "须为文件或目录的路径",
}
"""The Chinese of each pydantic error type a config can meet, filled in from the error's `ctx`; a type
missing here is reported in English alone."""

_QUOTED = re.compile(r"'[^']*'")


def _zh_ctx(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """`ctx` for the Chinese: whole numbers as pydantic's English writes them (0, not 0.0), a list of choices
    (`'a', 'b' or 'c'`) joined with 、."""
    out = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()}
    for key in ("expected", "expected_tags"):
        choices = _QUOTED.findall(str(ctx.get(key, "")))
        if choices:
            out[key] = "、".join(choices)
    return out


def error_text(error: ErrorDetails, en: str | None = None) -> str:
    """A pydantic error in both languages: a validator's own `ZhEn`, else the English (`en`, or pydantic's
    message) after the Chinese of `ZH_ERRORS`; English alone for a type the table lacks."""
    ctx = error.get("ctx") or {}
    raised = ctx.get("error")
    if isinstance(raised, ValueError) and raised.args and isinstance(raised.args[0], ZhEn):
        return raised.args[0]
    english = error["msg"].removeprefix("Value error, ") if en is None else en
    template = ZH_ERRORS.get(error["type"])
    try:
        return english if template is None else ZhEn(template.format_map(_zh_ctx(ctx)), english)
    except (KeyError, IndexError, ValueError):  # a ctx without the words the template needs
        return english


class MeterProblem(str):
    """The problem's text, as the planners have always reported it, plus where it is: the position of the
    site in the planned sites and of the meter in its site (ids may repeat in a file being checked), the
    setting under the meter (``modbus.unit``) and the message without the location, so a config checker
    can point at the line of the file that holds the setting."""

    site: int
    meter: int
    field: str
    message: str

    def __new__(cls, text: str, *, site: int, meter: int, field: str, message: str) -> MeterProblem:
        self = super().__new__(cls, text)
        self.site, self.meter, self.field, self.message = site, meter, field, message
        return self
