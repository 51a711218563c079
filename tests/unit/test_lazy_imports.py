"""`gshp run` keeps pandas and numpy out of its process (~50 MB of RSS before its first meter): they are
imported only by what builds tables — reports, replays, backtests, evidence exports, history charts. pymodbus
is imported only where a gateway is polled or a simulator serves."""

from __future__ import annotations

import json
import subprocess
import sys

SERVICE_MODULES = ("gshp.cli", "gshp.service", "gshp.api.app", "gshp.reload", "gshp.evaluation", "gshp.arrival")


def _imported(*modules: str, of: tuple[str, ...] = ("pandas", "numpy"), then: str = "") -> dict[str, bool]:
    code = ("import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            f"{then}\n"
            f"print(json.dumps({{k: k in sys.modules for k in {of!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return dict(json.loads(out.stdout))


def test_the_service_and_every_command_import_neither_pandas_nor_numpy() -> None:
    assert _imported(*SERVICE_MODULES) == {"pandas": False, "numpy": False}


def test_a_report_still_imports_pandas_when_it_is_built() -> None:
    assert _imported("gshp.report.build") == {"pandas": True, "numpy": True}


def test_pymodbus_is_imported_only_by_what_polls_or_serves() -> None:
    assert _imported(*SERVICE_MODULES, "gshp.sources", of=("pymodbus",)) == {"pymodbus": False}
    polls = "from collector.modbus import ModbusCollector; from simulators.modbus import ModbusSimServer"
    assert _imported("collector.modbus", of=("pymodbus",), then=polls) == {"pymodbus": True}
