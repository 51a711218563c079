"""`gshp deadletter list|purge` reads the store under the config's state_dir."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from collector.deadletter import DeadLetterStore, NewDeadLetter
from gshp.cli import main


def test_list_as_table_and_json_then_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gshp.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\n", encoding="utf-8")
    store = DeadLetterStore(tmp_path / "state" / "deadletter.sqlite")
    now = time.time()
    store.put([NewDeadLetter(now, "mqtt", "dtu/1/up", "bad_json", "Expecting value", b'{"ts": '),
               NewDeadLetter(now, "mqtt", "dtu/2/up", "bad_encoding", "not UTF-8", b"\xff\x00")])
    store.close()
    assert main(["deadletter", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "2 dead letters" in out and "bad_json" in out and "base64:/wA=" in out
    args = ["deadletter", "list", "--config", str(config), "--format", "json", "--reason", "bad_json"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["topic"], r["payload"], r["payload_encoding"]) for r in rows] == [
        ("dtu/1/up", '{"ts": ', "utf-8")]
    assert main(["deadletter", "purge", "--config", str(config)]) == 0
    assert "deleted 2" in capsys.readouterr().out
