"""Access: MQTT over TLS with per-DTU credentials and ACLs (a DTU cannot publish into another DTU's topic,
the collector still gets its own), and secrets that never reach a log, stdout/stderr, a state file, `/healthz`,
`/metrics` or `gshp notify status` through a realistic session with failures (wrong MQTT password, InfluxDB
401; then an unreachable InfluxDB whose URL carries credentials and a token, and failing webhooks and robots
whose URLs carry path keys, `apikey=`, `access_token=` and `key=`) and recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from gshp.devstack import Influxd, Mosquitto, free_port
from tests.helpers import make_pki, wait_until
from tests.mqtt_support import REPO, Collector, Publisher
from tests.notify_peers import HttpPeer, Received

SECRETS = {
    "influx_password": "Infl-Pw-7f3a9c1e",
    "mqtt_password": "Mq-Pw-5b8d2e4f",
    "viewer_token": "tok-viewer-a1b2c3d4e5f6",
    "enforce_token": "tok-enforce-0f9e8d7c6b5a",
    "admin_token": "tok-admin-11223344aabb",
    "webhook_secret": "Wh-Sec-99887766",
    "wrong_mqtt_password": "Wrong-Mq-0000aaaa",
    "wrong_influx_password": "Wrong-Infl-1111bbbb",
    "dtu1_password": "Dtu1-Pw-2222cccc",
    "dtu2_password": "Dtu2-Pw-3333dddd",
    "bad_bearer": "tok-guessed-44445555",
    # in URLs: userinfo, query values, webhook path keys; in headers; robots' tokens
    "url_password": "PwSecret111",
    "url_token": "UrlTok-5555eeee",
    "path_key": "4f1c2d3e-PathKey-6666ffff",
    "apikey": "ApiKey-7777abcd",
    "header_token": "HdrTok-8888bcde",
    "dingtalk_token": "DingTok-9999cdef",
    "dingtalk_secret": "SECding-0000defa",
    "wecom_key": "WxKey-1212efab",
}


class AuthInfluxd(Influxd):
    """influxd with HTTP authentication on."""

    def prepare(self) -> None:
        super().prepare()
        conf = self.root / "influxd.conf"
        conf.write_text(conf.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n"))


def _tls_acl_broker(d: Path) -> Mosquitto:
    make_pki(d)
    passwd = d / "passwd"
    for i, (user, pw) in enumerate((("gshp", SECRETS["mqtt_password"]), ("dtu1", SECRETS["dtu1_password"]),
                                    ("dtu2", SECRETS["dtu2_password"]))):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, pw],
                       check=True, capture_output=True)
    (d / "acl").write_text("user gshp\ntopic read dtu/#\n\npattern write dtu/%u/#\n")
    return Mosquitto(d / "broker", persistence=False, extra_config=f"""
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key
password_file {passwd}
acl_file {d}/acl
allow_anonymous false
""").start()


def _config(path: Path, state: Path, influx: Influxd, broker: Mosquitto, ca: Path, api_port: int, hook_port: int,
            influx_password: str, mqtt_password: str) -> Path:
    t = SECRETS
    path.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {state}
influx: {{url: '{influx.url}', api: v1, bucket: secured, username: admin, password: '${{INFLUX_PASSWORD}}'}}
outbox: {{max_batch_age: 100ms}}
mqtt: {{host: localhost, port: {broker.port}, client_id: gshp-secure, username: gshp,
        password: '${{MQTT_PASSWORD}}', tls: {{ca: {ca}}}, reconnect_min: 200ms, reconnect_max: 1s}}
api:
  listen: 127.0.0.1:{api_port}
  tokens:
    - {{token: {t['viewer_token']}, role: viewer}}
    - {{token: {t['enforce_token']}, role: enforcement, districts: [宛城区]}}
    - {{token: {t['admin_token']}, role: admin}}
notify:
  - {{name: cases, type: webhook, url: 'http://127.0.0.1:{hook_port}/hook', secret: '${{WEBHOOK_SECRET}}'}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: Q1, role: extraction,  mqtt: {{topic: dtu/dtu1/up, profile: dtu-json}}}}
      - {{id: Q2, role: reinjection, mqtt: {{topic: dtu/dtu2/up, profile: dtu-json}}}}
""", encoding="utf-8")
    os.environ["INFLUX_PASSWORD"] = influx_password
    os.environ["MQTT_PASSWORD"] = mqtt_password
    os.environ["WEBHOOK_SECRET"] = SECRETS["webhook_secret"]
    return path


def test_tls_acl_and_no_secret_in_any_log_or_state_file(tmp_path: Path, figures: dict[str, Any]) -> None:
    d = tmp_path / "pki"
    d.mkdir()
    broker = _tls_acl_broker(d)
    influxd = AuthInfluxd(tmp_path / "influxd").start()
    requests.post(f"{influxd.url}/query", params={
        "q": f"CREATE USER admin WITH PASSWORD '{SECRETS['influx_password']}' WITH ALL PRIVILEGES"}, timeout=10)
    state, log = tmp_path / "state", tmp_path / "gshp.log"
    api_port, hook_port = free_port(), free_port()
    saved = {k: os.environ.get(k) for k in ("INFLUX_PASSWORD", "MQTT_PASSWORD", "WEBHOOK_SECRET")}
    pubs: list[Publisher] = []
    try:
        # 1. wrong MQTT password and wrong InfluxDB password: refused, said in the log, never echoed
        cfg = _config(tmp_path / "gshp.yaml", state, influxd, broker, d / "ca.crt", api_port, hook_port,
                      SECRETS["wrong_influx_password"], SECRETS["wrong_mqtt_password"])
        collector = Collector(cfg, api_port, log).start()
        try:
            wait_until(lambda: "refused the connection" in log.read_text() and "auth" in log.read_text(),
                       timeout=30, interval=0.2)
            r = requests.get(f"http://127.0.0.1:{api_port}/api/sites",
                             headers={"Authorization": f"Bearer {SECRETS['bad_bearer']}"}, timeout=5)
            assert r.status_code == 401
        finally:
            assert collector.stop() == 0
        # 2. the right ones: DTUs publish their own topics, and try each other's
        cfg = _config(tmp_path / "gshp.yaml", state, influxd, broker, d / "ca.crt", api_port, hook_port,
                      SECRETS["influx_password"], SECRETS["mqtt_password"])
        collector = Collector(cfg, api_port, log).start()
        try:
            collector.wait_subscribed()
            tls = {"ca": str(d / "ca.crt")}
            dtu1 = Publisher(broker.port, "dtu1", username="dtu1", password=SECRETS["dtu1_password"], **tls)
            dtu2 = Publisher(broker.port, "dtu2", username="dtu2", password=SECRETS["dtu2_password"], **tls)
            pubs += [dtu1, dtu2]
            t0 = int(time.time()) - 600
            own1 = [("dtu/dtu1/up", json.dumps({"ts": t0 + i, "total_m3": 100.0 + i}).encode()) for i in range(10)]
            own2 = [("dtu/dtu2/up", json.dumps({"ts": t0 + i, "total_m3": 200.0 + i}).encode()) for i in range(10)]
            spoof = [("dtu/dtu2/up", json.dumps({"ts": t0 + 100 + i, "total_m3": 9999.0}).encode())
                     for i in range(10)]
            dtu1.publish_all(spoof)  # the broker accepts the PUBLISH and drops it (ACL): nothing is delivered
            dtu1.publish_all(own1)
            dtu2.publish_all(own2)
            wait_until(lambda: len(_stored(influxd)) >= 20, timeout=30, interval=0.3)
            time.sleep(1.0)
            stored = _stored(influxd)
            for token in ("viewer_token", "enforce_token", "admin_token"):
                assert requests.get(f"http://127.0.0.1:{api_port}/api/sites", timeout=5,
                                    headers={"Authorization": f"Bearer {SECRETS[token]}"}).status_code == 200
        finally:
            for p in pubs:
                p.close()
            assert collector.stop() == 0
        # 3. InfluxDB unreachable at a URL with credentials, every receiver failing: said, never shown
        shown = _unreachable_and_failing(tmp_path, broker, d / "ca.crt", log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        broker.stop()
        influxd.stop()
    assert {(m, total) for m, _, total in stored} == {("Q1", 100.0 + i) for i in range(10)} | {
        ("Q2", 200.0 + i) for i in range(10)}
    # every byte the service wrote: its log (stdout + stderr) and every file in its state directory
    files = [log, *shown, *[p for p in (tmp_path / "state3").rglob("*") if p.is_file()],
             *[p for p in state.rglob("*") if p.is_file()]]
    leaks = [(name, f.name) for f in files for name, secret in SECRETS.items()
             if secret.encode() in f.read_bytes()]
    assert not leaks, leaks
    text = log.read_text()
    assert "refused the connection" in text
    # what the secrets were replaced by is there: the failures were reported, with their masked URLs
    assert "cannot reach InfluxDB at http://***@127.0.0.1:" in text and "/?token=***" in text
    assert "/open-apis/bot/v2/hook/***?apikey=***" in text and "dead-lettered" in text
    status = json.loads((tmp_path / "notify-status.json").read_text())
    assert {r["receiver"] for r in status["receivers"] if r["dead"] > 0} == {"hook-down", "hook-500", "ding", "wx"}
    assert all("***" in r["target"] for r in status["receivers"]) and status["messages"]
    figures.update(secrets_checked=len(SECRETS), files_scanned=len(files),
                   bytes_scanned=sum(f.stat().st_size for f in files), leaks=len(leaks),
                   acl_spoofed_publishes=len(spoof), acl_spoofed_stored=0, own_publishes_stored=len(stored))


def _unreachable_and_failing(tmp_path: Path, broker: Mosquitto, ca: Path, log: Path) -> list[Path]:
    """`gshp run --clock data` with InfluxDB unreachable at a URL with userinfo and a token, and a discharge
    that fires alerts to a webhook on a closed port, a webhook, a DingTalk and a WeCom robot whose server
    answers 500 echoing the request (path, query, headers). Returns the files holding what it showed:
    `/healthz`, `/metrics` and `gshp notify status` (table and JSON)."""
    t = SECRETS

    def echo(r: Received) -> tuple[int, bytes]:  # a broken proxy that echoes what it was sent
        query = "&".join(f"{k}={v}" for k, v in r.query.items())
        auth = r.headers.get("authorization", "") + r.headers.get("x-api-key", "")
        return 500, f"upstream failed for {r.path}?{query} {auth}".encode()

    peer = HttpPeer(respond=echo).start()
    dead_influx, closed, api_port = free_port(), free_port(), free_port()
    fast = "group_wait: 0s, group_interval: 0s, retry: {max_attempts: 2, backoff_base: 100ms, backoff_cap: 200ms}"
    hook_path = f"open-apis/bot/v2/hook/{t['path_key']}?apikey={t['apikey']}"
    cfg = tmp_path / "gshp3.yaml"
    cfg.write_text(f"""\
timezone: Asia/Shanghai
state_dir: {tmp_path / "state3"}
influx: {{url: 'http://admin:{t["url_password"]}@127.0.0.1:{dead_influx}/?token={t["url_token"]}', api: v1,
          bucket: secured, timeout: 1s}}
outbox: {{max_batch_age: 100ms}}
mqtt: {{host: localhost, port: {broker.port}, client_id: gshp-secure-3, username: gshp,
        password: '${{MQTT_PASSWORD}}', tls: {{ca: {ca}}}, reconnect_min: 200ms, reconnect_max: 1s}}
api: {{listen: 127.0.0.1:{api_port}}}
notify:
  - {{name: hook-down, type: webhook, url: 'http://127.0.0.1:{closed}/{hook_path}', secret: '${{WEBHOOK_SECRET}}',
     headers: {{Authorization: 'Bearer {t["header_token"]}'}}, timeout: 1s, {fast}}}
  - {{name: hook-500, type: webhook, url: '{peer.url}/{hook_path}', headers: {{X-Api-Key: '{t["header_token"]}'}},
     {fast}}}
  - {{name: ding, type: dingtalk, url: '{peer.url}/robot/send?access_token={t["dingtalk_token"]}',
     secret: '{t["dingtalk_secret"]}', {fast}}}
  - {{name: wx, type: wecom, url: '{peer.url}/cgi-bin/webhook/send?key={t["wecom_key"]}', {fast}}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: Q1, role: extraction,  mqtt: {{topic: dtu/dtu1/up, profile: dtu-json}}}}
      - {{id: Q2, role: reinjection, mqtt: {{topic: dtu/dtu2/up, profile: dtu-json}}}}
""", encoding="utf-8")
    shown = [tmp_path / "healthz.json", tmp_path / "metrics.txt", tmp_path / "notify-status.txt",
             tmp_path / "notify-status.json"]
    collector = Collector(cfg, api_port, log, ["--clock", "data"]).start()
    pubs: list[Publisher] = []
    try:
        collector.wait_subscribed()
        tls = {"ca": str(ca)}
        pubs = [Publisher(broker.port, f"dtu{i}-3", username=f"dtu{i}", password=t[f"dtu{i}_password"], **tls)
                for i in (1, 2)]
        t0 = int(time.time()) - 3 * 3600
        for i, rate in ((0, 60.0), (1, 36.0)):  # 40 % of the water drained for two hours
            pubs[i].publish_all([(f"dtu/dtu{i + 1}/up", json.dumps(
                {"ts": t0 + 60 * m, "rate_m3h": rate, "total_m3": 1000.0 + rate * m / 60}).encode())
                for m in range(120)])
        receivers = ("hook-down", "hook-500", "ding", "wx")
        base = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: all(f"{name}: notification" in log.read_text() for name in receivers)
                   and "cannot reach InfluxDB" in log.read_text(), timeout=60, interval=0.3)
        # health says so once the drainer has failed `health.drain_failures` times in a row
        wait_until(lambda: requests.get(base + "/healthz", timeout=5).json()["status"] != "ok", timeout=60,
                   interval=0.3)
        shown[0].write_text(requests.get(base + "/healthz", timeout=5).text)
        shown[1].write_text(requests.get(base + "/metrics", timeout=5).text)
    finally:
        for p in pubs:
            p.close()
        assert collector.stop() == 0
        peer.stop()
    assert json.loads(shown[0].read_text())["status"] != "ok"
    for out, extra in ((shown[2], []), (shown[3], ["--json"])):
        done = subprocess.run([sys.executable, "-m", "gshp.cli", "notify", "status", "--config", str(cfg), "--list",
                               *extra], cwd=REPO, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out.write_bytes(done.stdout + done.stderr)
    return shown


def _stored(influxd: Influxd) -> set[tuple[str, int, float]]:
    params = {"q": "SELECT total_m3 FROM flow GROUP BY meter", "db": "secured", "epoch": "ms",
              "u": "admin", "p": SECRETS["influx_password"]}
    r = requests.post(f"{influxd.url}/query", params=params, timeout=10)
    out: set[tuple[str, int, float]] = set()
    for series in r.json()["results"][0].get("series", []):
        out.update((series["tags"]["meter"], int(t), float(v)) for t, v in series["values"])
    return out


