"""One row of the benchmark table, and printing it (also as the README's Markdown table)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Row", "markdown", "text"]


@dataclass(frozen=True)
class Row:
    what: str
    figure: float
    unit: str
    baseline: float | None = None  # same unit, measured in the same run
    baseline_what: str = ""
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.figure / self.baseline


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def text(rows: Iterable[Row]) -> str:
    rows = list(rows)
    head = ("what", "figure", "baseline (same run)", "ratio", "goal")
    body = [(r.what, f"{_fmt(r.figure)} {r.unit}",
             f"{_fmt(r.baseline)} {r.unit} ({r.baseline_what})" if r.baseline else "—",
             f"{r.ratio:.2f}×" if r.ratio is not None else "—", r.goal) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: Iterable[Row]) -> str:
    out = ["| what | figure | baseline (same run) | ratio | goal |", "|---|---|---|---|---|"]
    for r in rows:
        base = f"{_fmt(r.baseline)} {r.unit} ({r.baseline_what})" if r.baseline else "—"
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
        out.append(f"| {r.what} | {_fmt(r.figure)} {r.unit} | {base} | {ratio} | {r.goal} |")
    return "\n".join(out)
