"""`gshp demo`: the simulated city runs end to end; alerts fire for the troubled sites and none for the
honest ones; readings reach its InfluxDB; the run's tokens guard acknowledging; `--config` uses the servers
a file names; Ctrl-C (here: the end of --hours, then SIGINT for a second run) leaves no process and no
listening port behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from gshp.config import ApiSettings
from gshp.demo import access_lines, demo_api
from gshp.devstack import Influxd, Mosquitto, free_port
from simulators.city import CITY
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
NAMES = {p.name: p for p in CITY}
METERS = {(p.id, m.id) for p in CITY for m in p.meters}


class Demo:
    """`gshp demo` as a child process; its output is read while it runs (the banner holds the tokens)."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "gshp.cli", "demo", "--listen", f"127.0.0.1:{self.port}",
                                      "--dir", str(root), *args], env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str) -> str:
        """The run's token of `role`, from the banner."""
        pattern = re.compile(rf"^\s+(?:tokens\s+)?(?:查看|执法) {role}\s+(\S+)")
        wait_until(lambda: any(pattern.match(line) for line in self.out), timeout=60)
        return next(m.group(1) for line in self.out if (m := pattern.match(line)))

    def config(self) -> dict[str, Any]:
        return dict(yaml.safe_load((self.root / "city.yaml").read_text(encoding="utf-8")))

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self.readers:
            t.join(10)
        return code, "".join(self.out), "".join(self.err)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie still answers kill(0); it no longer runs
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children …), from /proc."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p} - out
        out |= kids
        todo += kids
    return out


def _ports(config: dict[str, Any]) -> dict[str, int]:
    """Every port the demo serves on: board, Modbus simulators (one per gateway), webhook receiver, the HJ 212
    and SZY 206 listeners."""
    ports = {"board": int(config["api"]["listen"].rsplit(":", 1)[1]),
             "webhook receiver": int(config["notify"][0]["url"].split(":")[2].split("/")[0])}
    ports.update({f"modbus simulator {g['id']}": int(g["port"]) for g in config["gateways"]})
    ports.update({f"{p} listener": int(config[p]["listen"].rsplit(":", 1)[1]) for p in ("hj212", "szy206")
                  if p in config})
    return ports


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def _series(url: str, db: str) -> dict[tuple[str, str], int]:
    """Readings per meter: totals, or interval volumes (an HJ 212 logger's minute data)."""
    q = "SELECT count(total_m3), count(volume_m3) FROM flow GROUP BY site, meter"
    r = requests.post(f"{url}/query", params={"q": q, "db": db}, timeout=30)
    r.raise_for_status()
    return {(s["tags"]["site"], s["tags"]["meter"]): sum(int(v or 0) for v in s["values"][0][1:])
            for s in r.json()["results"][0].get("series", [])}


def _assert_nothing_left(demo: Demo, children: set[int], ports: dict[str, int]) -> None:
    assert children, "the demo runs its servers as child processes"
    assert not [p for p in children if _alive(p)], "a child process of the demo outlived it"
    assert not _descendants(demo.proc.pid)
    open_ports = [name for name, port in ports.items() if not _refused(port)]
    assert not open_ports, f"still listening after the demo stopped: {open_ports}"


def _incidents(url: str) -> dict[str, dict[str, Any]]:
    """The discharge incident of each site (its latest), by site name."""
    found = _json(f"{url}/api/incidents?kind=discharge") or {"incidents": []}
    by_id = {p.id: p.name for p in CITY}
    return {by_id[i["site"]]: i for i in reversed(found["incidents"])}


def test_demo_city_alerts_for_the_troubled_sites_only(tmp_path: Path) -> None:
    # from 21:30 the day before, through the night (the night-only drain runs 22:00-06:00) until 17:30: the
    # night incident resolves once even its 6-hour window has cleared, and hours of data time remain to see it
    start = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).replace(hour=21, minute=30, second=0,
                                                                                     microsecond=0)
    demo = Demo(tmp_path / "demo", "--speed", "600", "--hours", "20", "--start", start.isoformat())
    try:
        wait_until(lambda: _get(f"{demo.url}/healthz"), timeout=60, interval=0.5)
        config = demo.config()
        # the demo's API is readable without a token on loopback
        wait_until(lambda: len(_firing(demo.url)) >= 2, timeout=90, interval=1)
        children = _descendants(demo.proc.pid)
        # every meter of the city, Modbus, MQTT, HJ 212 and SZY 206, has readings in the demo's influxd (the
        # loggers' first uploads may come after the first alerts)
        wait_until(lambda: set(_series(config["influx"]["url"], config["influx"]["bucket"])) == METERS, timeout=60,
                   interval=1)
        stored = _series(config["influx"]["url"], config["influx"]["bucket"])
        assert set(stored) == METERS and all(n > 0 for n in stored.values()), stored

        # acknowledging needs the run's enforcement token: none → 401 (the board asks), viewer → 403
        alert = _firing(demo.url)[0]["id"]
        ack = f"{demo.url}/api/alerts/{alert}/ack"
        assert requests.post(ack, json={"comment": "x"}, timeout=5).status_code == 401
        viewer, enforcement = demo.token("viewer"), demo.token("enforcement")
        assert viewer != enforcement and len(enforcement) >= 16
        assert requests.post(ack, json={}, headers={"Authorization": f"Bearer {viewer}"}, timeout=5).status_code == 403
        r = requests.post(ack, json={"comment": "已派人核查"}, headers={"Authorization": f"Bearer {enforcement}"},
                          timeout=5)
        assert r.status_code == 200 and r.json()["acknowledged"] and r.json()["acked_by"] == "demo enforcement"
        assert enforcement not in (tmp_path / "demo" / "city.yaml").read_text(encoding="utf-8")

        # one incident per episode: the hospital's stays open and its volume grows; the night discharger's has
        # resolved by the morning and keeps its volume
        wait_until(lambda: _incidents(demo.url).get("卧龙区政务服务中心", {}).get("state") == "resolved",
                   timeout=120, interval=1)
        seen = _incidents(demo.url)
        night, hospital = seen["卧龙区政务服务中心"], seen["宛城区人民医院"]
        assert night["volume_m3"]["estimate"] > 0 and night["ended_at"] is not None
        assert hospital["state"] == "open" and hospital["volume_m3"]["estimate"] > 0
        wait_until(lambda: _incidents(demo.url)["宛城区人民医院"]["volume_m3"]["estimate"]
                   > hospital["volume_m3"]["estimate"], timeout=30, interval=1)
        later = _incidents(demo.url)
        assert later["宛城区人民医院"]["id"] == hospital["id"]  # the same incident, grown
        assert later["卧龙区政务服务中心"]["volume_m3"] == night["volume_m3"]  # kept after it resolved
        counted = _json(f"{demo.url}/api/incidents?kind=discharge&site={NAMES['宛城区人民医院'].id}")
        assert counted is not None and len(counted["incidents"]) == 1  # one incident, whatever windows fired
        code, out, err = demo.wait(120)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.wait(10)
    assert code == 0, err[-3000:]
    printed = re.findall(r"^\[\d\d-\d\d \d\d:\d\d\] (\S+) \S+ \S+ (\S+) (.*)$", out, re.M)
    fired = {site for state, site, _ in printed if state in ("新事件", "再次发生", "升级")}
    assert "宛城区人民医院" in fired  # drains 35 %
    assert "卧龙区政务服务中心" in fired  # drains at night
    assert any(site == "高新区创业园" and "回灌流量计无数据（R2）" in text  # R2 goes silent after 3 h
               for state, site, text in printed if state == "新事件")
    assert not [site for site in fired if NAMES[site].honest], f"alerts for honest sites: {printed}"
    assert "loopback: reading needs no token; acknowledging an alert needs the enforcement token" in out
    assert "demo stopped" in out
    _assert_nothing_left(demo, children, _ports(config))


def test_ctrl_c_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo", "--speed", "300")
    try:
        wait_until(lambda: _get(f"{demo.url}/healthz"), timeout=60, interval=0.5)
        wait_until(lambda: bool(requests.get(f"{demo.url}/api/sites", timeout=5).json()["sites"][0]["last_seen"]),
                   timeout=30)
        # the map: every site placed inside the outline of its district
        shown = requests.get(f"{demo.url}/api/map", timeout=5).json()
        assert len(shown["sites"]) == len(CITY) and all(s["location"] for s in shown["sites"])
        assert sorted(f["properties"]["district"] for f in shown["outlines"]["features"]) == shown["districts"]
        outline = {f["properties"]["district"]: f["geometry"]["coordinates"][0] for f in shown["outlines"]["features"]}
        for s in shown["sites"]:
            assert _inside(s["location"]["lon"], s["location"]["lat"], outline[s["district"]]), s
        pids = [int((tmp_path / "demo" / name / f"{name}.pid").read_text()) for name in ("influxd", "mosquitto")]
        children = _descendants(demo.proc.pid)
        assert set(pids) <= children
        config = demo.config()
    finally:
        demo.proc.send_signal(signal.SIGINT)
        code, out, err = demo.wait(60)
    assert code == 0, (out + err)[-3000:]
    assert "demo stopped" in out
    assert not any(_alive(pid) for pid in pids), "the demo's servers must stop with it"
    _assert_nothing_left(demo, children, _ports(config))


def test_demo_uses_the_influxdb_and_broker_its_config_names(tmp_path: Path, influxd: Influxd, influx_db: str,
                                                            mosquitto: Mosquitto) -> None:
    theirs = tmp_path / "site.yaml"
    theirs.write_text(f"""\
influx: {{url: '{influxd.url}', api: v1, bucket: {influx_db}}}
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: production-collector, shared_group: city}}
sites: []
""", encoding="utf-8")
    demo = Demo(tmp_path / "demo", "--speed", "600", "--hours", "1.5", "--config", str(theirs))
    code, out, err = demo.wait(120)
    assert code == 0, err[-3000:]
    assert not (tmp_path / "demo" / "influxd").exists() and not (tmp_path / "demo" / "mosquitto").exists()
    assert f"{influxd.url} (database {influx_db}, from {theirs})" in out
    assert f"127.0.0.1:{mosquitto.port} (from {theirs}, topics under gshp-demo/)" in out
    config = demo.config()
    # on the shared broker: a client id and topics of its own, never the production shared group
    assert config["mqtt"]["client_id"] == "gshp-demo" and "shared_group" not in config["mqtt"]
    assert all(m["mqtt"]["topic"].startswith("gshp-demo/dtu/") for s in config["sites"] for m in s["meters"]
               if "mqtt" in m)
    stored = _series(influxd.url, influx_db)
    assert set(stored) == METERS, "Modbus and MQTT meters alike write into the InfluxDB the file names"


def test_demo_refuses_a_config_whose_servers_do_not_answer(tmp_path: Path) -> None:
    theirs = tmp_path / "site.yaml"
    port = free_port()
    theirs.write_text(f"mqtt: {{host: 127.0.0.1, port: {port}}}\n", encoding="utf-8")
    code, _, err = Demo(tmp_path / "demo", "--config", str(theirs)).wait(60)
    assert code == 2
    assert f"{theirs}: mqtt: 127.0.0.1:{port} 无人应答" in err
    assert f"/ nothing answers at 127.0.0.1:{port}: start the broker, or leave `mqtt:` out" in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(("listen", "open_read"), [("127.0.0.1:8080", True), ("[::1]:8080", True),
                                                   ("localhost:8080", True), ("0.0.0.0:8080", False),
                                                   ("192.168.10.5:8080", False)])
def test_the_banner_says_who_needs_a_token(listen: str, open_read: bool) -> None:
    raw = demo_api(listen)
    api = ApiSettings.model_validate({**raw, "tokens": [{**t, "token": f"{t['role']}-token-0123456789"}
                                                        for t in raw["tokens"]]})
    assert api.open_read is open_read  # what the API's authenticator goes by
    text = "\n".join(access_lines(api, "V" * 24, "E" * 24))
    assert f"http://{listen}/" in text and "V" * 24 in text and "E" * 24 in text
    if open_read:
        assert "本机访问：查看无需令牌，确认告警需执法令牌" in text
        assert "loopback: reading needs no token; acknowledging an alert needs the enforcement token" in text
    else:
        assert "非本机地址：每个请求都需令牌" in text and "every request needs a token" in text
        assert "needs no token" not in text and "无需令牌" not in text


def _firing(url: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{url}/api/alerts", params={"state": "firing"}, timeout=5).json()["alerts"])


def _json(url: str) -> Any:
    try:
        r = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def _get(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _inside(x: float, y: float, ring: list[list[float]]) -> bool:
    """Whether (x, y) is inside a polygon ring (even-odd rule)."""
    inside = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside
