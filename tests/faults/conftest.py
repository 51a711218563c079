"""The fault-injection suite: every test here is marked `faults` and records the figures it measured.

Run it alone with `.venv/bin/pytest -m faults tests/faults`; the figures are printed at the end of the
run (and written as JSON to the file named by GSHP_FAULTS_FIGURES, if set) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIGURES: dict[str, dict[str, Any]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with what it measured; reported under the test's name."""
    found: dict[str, Any] = {}
    yield found
    if found:
        FIGURES[request.node.name] = found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault-suite figures")
    for name, found in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(found, ensure_ascii=False, sort_keys=True)}")
    target = os.environ.get("GSHP_FAULTS_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
