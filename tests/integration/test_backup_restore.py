"""`gshp backup` copies a running service's state, `gshp restore` puts it back: after the state directory
is destroyed, every alert, case entry, audit record and queued notification is found again. Real
`gshp run`, mosquitto and influxd; the notifications stay queued because their webhook does not answer."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.mqtt_support import NOW0, REPO, Collector, Publisher, dtu_json, write_config

pytestmark = pytest.mark.integration

METERS = """\
      - {id: E1, role: extraction,  mqtt: {topic: dtu/E1/up, profile: dtu-json}}
      - {id: R1, role: reinjection, mqtt: {topic: dtu/R1/up, profile: dtu-json}}"""


def gshp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gshp.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)


def rows(db: Path, query: str) -> set[tuple[object, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {tuple(r) for r in con.execute(query)}
    finally:
        con.close()


def snapshot(state: Path) -> dict[str, set[tuple[object, ...]]]:
    return {"alerts": rows(state / "alerts.sqlite", "SELECT id, rule, state FROM alerts"),
            "cases": rows(state / "alerts.sqlite", "SELECT * FROM case_history"),
            "audit": rows(state / "alerts.sqlite", "SELECT * FROM audit"),
            "queued": rows(state / "notify.sqlite", "SELECT key, receiver FROM messages WHERE status != 'sent'")}


def test_backup_of_a_running_service_restores_every_alert_and_queued_notification(
        tmp_path: Path, influxd: Influxd, mosquitto: Mosquitto, influx_db: str) -> None:
    state, api = tmp_path / "state", free_port()
    config = write_config(tmp_path / "gshp.yaml", state_dir=state, influx_url=influxd.url, db=influx_db,
                          mqtt_port=mosquitto.port, client_id="gshp-backup", meters=METERS, api_port=api)
    dead = free_port()  # nothing listens there: every notification stays queued, retried
    token = "enforcement-token-0001"
    config.write_text(config.read_text().replace(
        "api: {listen:", f"api: {{loopback_read: true, tokens: [{{token: {token}, role: enforcement, "
                         "name: 执法一队}], listen:") + f"""\
notify:
  - {{name: cases, type: webhook, url: 'http://127.0.0.1:{dead}/hook', timeout: 1s, group_wait: 0s,
     group_interval: 0s, retry: {{max_attempts: 1000, backoff_base: 1s, backoff_cap: 2s}}}}
""")
    service = Collector(config, api, tmp_path / "gshp.log", extra=["--clock", "data"]).start()
    pub = Publisher(mosquitto.port, "dtu-backup")
    try:
        service.wait_subscribed()
        messages = []
        for i in range(4 * 60):  # four hours a minute apart: half the water never comes back
            ts = NOW0 + timedelta(minutes=i)
            messages += [("dtu/E1/up", dtu_json(ts, 1000.0 + i, 60.0)),
                         ("dtu/R1/up", dtu_json(ts, 500.0 + i / 2, 30.0))]
        pub.publish_all(messages)
        deadline = time.monotonic() + 60
        while True:
            alerts = requests.get(f"http://127.0.0.1:{api}/api/alerts", timeout=5).json()["alerts"]
            before = snapshot(state)
            if any(a["state"] == "firing" for a in alerts) and before["queued"]:
                break
            assert time.monotonic() < deadline, service.log.read_text()[-3000:]
            time.sleep(0.5)
        (incident,) = requests.get(f"http://127.0.0.1:{api}/api/incidents?kind=discharge", timeout=5).json()[
            "incidents"]
        acked = requests.post(f"http://127.0.0.1:{api}/api/incidents/{incident['id']}/ack",
                              json={"comment": "已派人核查"}, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert acked.status_code == 200, acked.text
        time.sleep(1.0)  # the last evaluation's transitions and their notifications are written
        before = snapshot(state)
        assert before["cases"] and before["audit"]
        refused = gshp("restore", "--config", str(config), "--from", str(tmp_path), "--force")
        assert refused.returncode == 2 and "manifest" in refused.stderr  # not a backup folder: nothing touched

        backup_dir = tmp_path / "backup"
        done = gshp("backup", "--config", str(config), "--to", str(backup_dir))  # while the service runs
        assert done.returncode == 0, done.stderr
        assert "influxd backup -portable" in done.stdout  # printed for the operator without --influx-rpc
        busy = gshp("restore", "--config", str(config), "--from", str(backup_dir), "--force")
        assert busy.returncode == 2 and f"PID {service.proc.pid}" in busy.stderr  # never under a running service
    finally:
        pub.close()
        assert service.stop() == 0
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    listed = {f["path"]: f["kind"] for f in manifest["files"]}
    assert {"alerts.sqlite", "notify.sqlite", "outbox.sqlite"} <= {p for p, k in listed.items() if k == "sqlite"}
    assert not any(p.endswith(("-wal", "-shm")) for p in listed)
    assert (backup_dir / "manifest.json").stat().st_mode & 0o077 == 0

    shutil.rmtree(state)
    done = gshp("restore", "--config", str(config), "--from", str(backup_dir))
    assert done.returncode == 0, done.stderr
    after = snapshot(state)
    assert after == before
    assert before["alerts"] and before["queued"]
    assert state.stat().st_mode & 0o777 == 0o700

    again = gshp("restore", "--config", str(config), "--from", str(backup_dir))
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites state it was not told to
    forced = gshp("restore", "--config", str(config), "--from", str(backup_dir), "--force")
    assert forced.returncode == 0 and "before-restore" in forced.stdout


def test_restore_refuses_a_backup_whose_bytes_changed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "attachments").mkdir(parents=True)
    con = sqlite3.connect(state / "alerts.sqlite")
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES ('确认外排')")
    con.commit()
    con.close()
    (state / "attachments" / "photo.jpg").write_bytes(b"\xff\xd8drain")
    config = tmp_path / "gshp.yaml"
    config.write_text(f"state_dir: {state}\ninflux: {{api: v1}}\nsites: []\n", encoding="utf-8")
    done = gshp("backup", "--config", str(config), "--to", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "b" / "state" / "attachments" / "photo.jpg"
    copy.write_bytes(b"\xff\xd8Drain")
    shutil.rmtree(state)
    refused = gshp("restore", "--config", str(config), "--from", str(tmp_path / "b"))
    assert refused.returncode == 2 and "attachments/photo.jpg" in refused.stderr
    assert not state.exists()  # nothing was touched


def test_with_the_rpc_address_influxdb_is_backed_up_beside_the_state(tmp_path: Path, influxd: Influxd,
                                                                     influx_db: str) -> None:
    influxd.query(f'CREATE DATABASE "{influx_db}"')
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "gshp.yaml"
    config.write_text(f"state_dir: {state}\ninflux: {{api: v1, url: '{influxd.url}', bucket: {influx_db}}}\n"
                      "sites: []\n", encoding="utf-8")
    done = gshp("backup", "--config", str(config), "--to", str(tmp_path / "b"), "--influx-rpc",
                f"127.0.0.1:{influxd.rpc_port}")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["influx"]["exit_status"] == 0
    assert any(p.name.endswith(".manifest") for p in (tmp_path / "b" / "influx").iterdir())
