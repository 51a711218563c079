"""The compiled engine: the same alerts and incidents as the pure-Python one, and never a stale build."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rules import compiled
from simulators.scenarios import build

REPO = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
# discharges, the forensic checks, a meter change across a gap, a frozen reinjection meter, backwash and permits
SCENARIOS = ["discharge-20", "frozen-reinjection", "backwash-over-cap", "synthetic-reinjection",
             "rescaled-across-gap", "quota-projection", "sealed-pumping", "replacement-cover-3"]

needs_build = pytest.mark.skipif(not compiled.current(), reason="no current compiled build (./dev setup builds it)")


def _replay(case: Path, engine: str) -> tuple[str, str]:
    env = {**ENV, compiled.ENV: engine}
    done = subprocess.run([sys.executable, "-m", "gshp.cli", "replay", "--config", str(case / "config.yaml"),
                           "--readings", str(case / "readings.csv"), "--incidents"],
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    return done.stdout, done.stderr


@needs_build
@pytest.mark.parametrize("name", SCENARIOS)
def test_compiled_and_pure_engines_raise_the_same_alerts_and_incidents(name: str, tmp_path: Path) -> None:
    data = build(name)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data.config(), allow_unicode=True), encoding="utf-8")
    data.readings.to_csv(tmp_path / "readings.csv", index=False)
    fast, fast_err = _replay(tmp_path, "compiled")
    pure, pure_err = _replay(tmp_path, "python")
    assert "编译引擎 compiled engine" in fast_err and "纯 Python 引擎 pure-Python engine" in pure_err
    assert fast.splitlines() == pure.splitlines()
    assert [json.loads(line) for line in fast.splitlines()]  # each scenario raises something to compare


def _tree(root: Path) -> None:
    """A copy of the sources the build is checked against."""
    for package in ("rules", "alerting"):
        (root / package).mkdir(parents=True)
        for f in (REPO / package).glob("*.py"):
            shutil.copy(f, root / package / f.name)
    (root / "collector").mkdir()
    for name in ("model.py", "duration.py"):
        shutil.copy(REPO / "collector" / name, root / "collector" / name)


def _fake_build(out: Path, root: Path) -> None:
    """A build directory whose manifest matches `root`'s sources (its modules are empty files)."""
    (out / "rules").mkdir(parents=True)
    for name in compiled.MODULES:
        (out / "rules" / f"{name}{compiled.SUFFIX}").touch()
    (out / compiled.MANIFEST).write_text(json.dumps({
        "suffix": compiled.SUFFIX, "modules": list(compiled.MODULES), "shared": "x__mypyc",
        "sources": compiled.digest(root)}), encoding="utf-8")


def test_a_build_goes_stale_when_any_source_it_was_checked_against_changes(tmp_path: Path) -> None:
    root, out = tmp_path / "src", tmp_path / "out"
    _tree(root)
    _fake_build(out, root)
    assert compiled.current(out, root)
    for edited in ("rules/windows.py", "alerting/model.py", "collector/model.py"):
        original = (root / edited).read_text(encoding="utf-8")
        (root / edited).write_text(original + "\n# edited\n", encoding="utf-8")
        assert not compiled.current(out, root), edited
        (root / edited).write_text(original, encoding="utf-8")
        assert compiled.current(out, root)
    (root / "rules" / "compiled.py").write_text("# the chooser is not part of the engine\n", encoding="utf-8")
    assert compiled.current(out, root)
    (out / "rules" / f"engine{compiled.SUFFIX}").unlink()
    assert not compiled.current(out, root)


def test_a_stale_build_is_never_put_on_the_path(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root, out = tmp_path / "src", tmp_path / "out"
    _tree(root)
    _fake_build(out, root)
    (root / "rules" / "balance.py").write_text("# edited\n", encoding="utf-8")
    monkeypatch.delenv(compiled.ENV, raising=False)
    path = ["rules"]
    with caplog.at_level(logging.WARNING, logger="rules.compiled"):
        assert compiled.activate(path, out, root) == "python"
    assert path == ["rules"]
    assert "./dev setup" in caplog.text and "纯 Python" in caplog.text
    monkeypatch.setenv(compiled.ENV, "compiled")
    with pytest.raises(RuntimeError, match="stale"):
        compiled.activate(path, out, root)
    monkeypatch.setenv(compiled.ENV, "python")
    assert compiled.activate(path, tmp_path / "none", root) == "python" and path == ["rules"]


@needs_build
def test_the_engine_variable_chooses_the_engine_of_a_process() -> None:
    probe = "import rules, rules.compiled as c; print(rules.ENGINE, c.running())"
    for engine, expected in (("python", "python python"), ("compiled", "compiled compiled"), ("", "compiled compiled")):
        done = subprocess.run([sys.executable, "-c", probe], env={**ENV, compiled.ENV: engine},
                              capture_output=True, text=True, check=True)
        assert done.stdout.split() == expected.split() and done.stderr == ""
