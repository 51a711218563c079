"""The benchmark table: a case without an alert is a miss, and the README's table is replaced in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.detection import Outcome, rows
from bench.readme import END, START, replace_table, splice_rows, table_of, update_readme
from bench.table import Row, markdown, text


def _outcome(name: str, delay_s: float | None, rule: str | None, expect: str = "discharge") -> Outcome:
    return Outcome(name, expect, "balance_gross" if expect != "none" else None, 2700.0 if expect != "none" else None,
                   1.0, delay_s, rule, 0, 0, 0, 100, 0.1)


def test_a_case_without_an_alert_is_a_miss_never_zero_minutes() -> None:
    got = rows([_outcome("discharge-20", None, None), _outcome("discharge-40", 0.0, "balance_gross"),
                _outcome("honest", None, None, "none")])
    missed, instant, false, pending = got
    assert missed.figure is None and missed.what == "detection: discharge-20"
    assert missed.goal == "≤ 45 min — MISSED"
    assert instant.figure == 0.0 and instant.goal == "≤ 45 min"  # an alert at the onset is 0 min, and met
    table = markdown(got)
    assert "| detection: discharge-20 | no alert | — | — | ≤ 45 min — MISSED |" in table
    assert "| detection: discharge-40 → balance_gross | 0 min | — | — | ≤ 45 min |" in table
    assert "0 min" not in table.split("\n")[2]
    assert "no alert" in text(got).splitlines()[2]
    assert false.what == "false discharge alerts over 1 honest site-days" and false.figure == 0
    assert pending.figure == 0 and pending.goal == "≤ 1"


def test_a_row_without_a_figure_has_no_ratio() -> None:
    assert Row("x", None, "msg/s", baseline=10.0).ratio is None
    assert Row("x", 5.0, "msg/s", baseline=10.0).ratio == 0.5


README = f"""\
# Project

## Performance

Measured by `./dev bench`:

{START}
| what | figure | baseline (same run) | ratio | goal |
|---|---|---|---|---|
| old row | 1 x | — | — | — |
{END}

These machines are noisy.
"""


def test_update_readme_replaces_only_the_table_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    table = markdown([Row("outbox → influxd", 96979.0, "readings/s", 243436.0, "bare /write", "≥ 0.5×")])
    assert update_readme(readme, table)
    assert readme.read_text(encoding="utf-8") == README.replace(
        "| what | figure | baseline (same run) | ratio | goal |\n|---|---|---|---|---|\n| old row | 1 x | — | — | — |",
        table)
    assert "| outbox → influxd | 96,979 readings/s | 243,436 readings/s (bare /write) | 0.40× | ≥ 0.5× |" in \
        readme.read_text(encoding="utf-8")
    assert not update_readme(readme, table + "\n")  # the same table again: the file is left as it is
    assert list(tmp_path.iterdir()) == [readme]


@pytest.mark.parametrize("text", ["no markers at all\n", f"{START}\nonly the start\n", f"{END}\n{START}\n",
                                  f"{START}\n{START}\n{END}\n"])
def test_update_readme_refuses_a_file_without_one_pair_of_markers(tmp_path: Path, text: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="bench:"):
        update_readme(readme, "| t |")
    assert readme.read_text(encoding="utf-8") == text
    assert replace_table(f"a\n{START}\nold\n{END}\nb\n", "| t |\n") == f"a\n{START}\n| t |\n{END}\nb\n"


def test_splice_rows_replaces_only_one_benchmarks_rows_where_they_stood() -> None:
    old = markdown([Row("outbox put", 1.0, "r/s"), Row("detection: a", 2.0, "min"), Row("detection: b", 3.0, "min"),
                    Row("gshp replay", 4.0, "r/s")])
    new = markdown([Row("detection: a", 5.0, "min"), Row("detection: c", 6.0, "min")])
    got = splice_rows(old, new, ("detection:",)).splitlines()
    assert [line.split(" | ")[0] for line in got[2:]] == ["| outbox put", "| detection: a", "| detection: c",
                                                          "| gshp replay"]
    assert "5 min" in got[3] and got[:2] == old.splitlines()[:2]
    assert table_of(f"x\n{START}\n{old}\n{END}\ny") == old


def test_only_a_benchmark_naming_its_rows_may_update_the_readme_alone(tmp_path: Path, monkeypatch, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\n| a | b |\n{END}\n", encoding="utf-8")
    monkeypatch.setattr("sys.argv", ["bench", "--only", "bench.replay", "--update-readme", str(readme)])
    with pytest.raises(SystemExit) as exit_:
        bench_main()  # refused before any benchmark runs: its rows would replace every other one's
    assert exit_.value.code == 2 and "bench.replay names no ROW_PREFIXES" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == f"# x\n{START}\n| a | b |\n{END}\n"
