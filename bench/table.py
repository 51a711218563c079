"""One row of the benchmark table, and printing it (also as the README's Markdown table)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Row", "markdown", "text"]


@dataclass(frozen=True)
class Row:
    what: str
    figure: float | None  # None: nothing to measure (a case that produced no alert), shown as `missing`
    unit: str
    baseline: float | None = None  # same unit, measured in the same run
    baseline_what: str = ""
    goal: str = ""
    missing: str = "—"

    @property
    def ratio(self) -> float | None:
        return None if self.figure is None or not self.baseline else self.figure / self.baseline


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _cells(r: Row) -> tuple[str, str, str, str, str]:
    figure = r.missing if r.figure is None else f"{_fmt(r.figure)} {r.unit}"
    base = f"{_fmt(r.baseline)} {r.unit} ({r.baseline_what})" if r.baseline else "—"
    ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
    return r.what, figure, base, ratio, r.goal


_HEAD = ("what", "figure", "baseline (same run)", "ratio", "goal")


def text(rows: Iterable[Row]) -> str:
    body = [_cells(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(_HEAD, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in (_HEAD, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: Iterable[Row]) -> str:
    out = ["| " + " | ".join(_HEAD) + " |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(out)
