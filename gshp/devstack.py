"""A private mosquitto and influxd on free loopback ports, with their data under one directory.

Used by the test fixtures, by `gshp demo` and by `deploy/devstack`. Each server gets a generated config
binding loopback only, is started as a child process, waited for until it answers, and is stopped by
PID. `python -m gshp.devstack start|stop|status DIR` manages a stack that outlives the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import requests

__all__ = ["Influxd", "Mosquitto", "Server", "free_port", "wait_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent process dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                       if os.path.exists(p)), None)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed: apt-get install {package} (make setup does this)")
    return path


@dataclass
class Server:
    """A child server process with its own directory; start() waits until its port answers."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    tied: bool = True  # the server dies with this process (no orphans after a crash of the parent)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    name = "server"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        raise NotImplementedError

    def ready(self) -> None:
        wait_port(self.host, self.port)

    @property
    def pidfile(self) -> Path:
        return self.root / f"{self.name}.pid"

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self.prepare()
        log = open(self.root / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if self.tied else None)
        log.close()
        self.pidfile.write_text(str(self.proc.pid))
        try:
            self.ready()
        except TimeoutError:
            self.stop()
            tail = (self.root / f"{self.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not start on {self.host}:{self.port}:\n{tail}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Mosquitto(Server):
    name = "mosquitto"
    extra_config: str = ""
    persistence: bool = True

    def prepare(self) -> None:
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        lines = [f"listener {self.port} {self.host}"]
        if "allow_anonymous" not in self.extra_config and "password_file" not in self.extra_config:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0 and "user " not in self.extra_config:
            lines.append("user root")  # as root, mosquitto switches to user mosquitto and cannot write data/
        if self.persistence:
            lines += ["persistence true", f"persistence_location {data}/", "autosave_interval 1"]
        lines += ["max_queued_messages 1000000", "max_inflight_messages 1000", self.extra_config]
        (self.root / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [_binary("mosquitto", "mosquitto"), "-c", str(self.root / "mosquitto.conf")]


@dataclass
class Influxd(Server):
    name = "influxd"
    rpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def prepare(self) -> None:
        if not self.rpc_port:
            self.rpc_port = free_port(self.host)
        d = self.root
        (d / "influxd.conf").write_text(f"""\
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  max-values-per-tag = 0
[monitor]
  store-enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
  suppress-logo = true
[subscriber]
  enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
""")

    def command(self) -> list[str]:
        return [_binary("influxd", "influxdb"), "-config", str(self.root / "influxd.conf")]

    def ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or not self.running:
                raise TimeoutError
            time.sleep(0.1)

    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """Run InfluxQL and return the raw `results` list (test and tooling helper)."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        r = requests.post(f"{self.url}/query", params=params, timeout=30)
        r.raise_for_status()
        return list(r.json()["results"])


# -- a stack that outlives the command (deploy/devstack) ----------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _state(root: Path) -> dict[str, Any]:
    f = root / "stack.json"
    return dict(json.loads(f.read_text())) if f.exists() else {}


def stack_start(root: Path) -> dict[str, Any]:
    st = _state(root)
    if st and all(_pid_alive(int(p)) for p in st["pids"].values()):
        return st
    mq = Mosquitto(root / "mosquitto", tied=False)
    mq.start()
    ix = Influxd(root / "influxd", tied=False)
    ix.start()
    assert mq.proc and ix.proc
    st = {"mqtt": {"host": mq.host, "port": mq.port}, "influx": {"url": ix.url},
          "pids": {"mosquitto": mq.proc.pid, "influxd": ix.proc.pid}}
    (root / "stack.json").write_text(json.dumps(st, indent=2))
    mq.proc = ix.proc = None  # keep them running after this process exits
    return st


def stack_stop(root: Path) -> None:
    st = _state(root)
    for name, value in st.get("pids", {}).items():
        pid = int(value)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        print(f"stopped {name} (pid {pid})")
    (root / "stack.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devstack", description=__doc__)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("dir", nargs="?", default="var/devstack", help="where data, logs and PIDs live")
    a = p.parse_args(argv)
    root = Path(a.dir).resolve()
    if a.action == "start":
        print(json.dumps(stack_start(root), indent=2))
    elif a.action == "stop":
        stack_stop(root)
    else:
        st = _state(root)
        alive = {k: _pid_alive(int(v)) for k, v in st.get("pids", {}).items()}
        print(json.dumps({**st, "alive": alive}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
