"""Rule regression cases: each folder under tests/cases/rules holds config.yaml + readings.csv + expected.jsonl."""

import json
from pathlib import Path

import pytest

from gshp.cli import main

CASES = sorted(p for p in (Path(__file__).parent.parent / "cases" / "rules").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_replay_reproduces_the_expected_transitions(case, capsys):
    args = ["replay", "--config", str(case / "config.yaml"), "--readings", str(case / "readings.csv")]
    assert main(args) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = [json.loads(line) for line in (case / "expected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert got == want
