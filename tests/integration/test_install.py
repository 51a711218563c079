"""`deploy/install.sh --prefix DIR` lays out a host as the systemd units expect it: the service user, the
package in /opt/gshp/.venv, a config that validates, private state and secrets; run again, it upgrades
the package and keeps what the operator edited."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_support import REPO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="the installer creates a user: root only")]


@pytest.fixture
def user() -> Iterator[str]:
    name = f"gshp-t{secrets.token_hex(3)}"
    yield name
    subprocess.run(["userdel", name], check=False, capture_output=True)
    subprocess.run(["groupdel", name], check=False, capture_output=True)


def install(prefix: Path, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(REPO / "deploy" / "install.sh"), "--prefix", str(prefix), "--user", user],
                          capture_output=True, text=True, timeout=600, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_into_a_prefix_then_upgrade_keeps_the_operators_files(tmp_path: Path, user: str) -> None:
    prefix = tmp_path / "root"
    done = install(prefix, user)
    assert done.returncode == 0, done.stderr[-3000:]
    account = pwd.getpwnam(user)
    assert account.pw_shell == "/usr/sbin/nologin" and account.pw_dir == "/var/lib/gshp"

    gshp = prefix / "opt/gshp/.venv/bin/gshp"
    version = subprocess.run([str(gshp), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("gshp-monitor ")
    config = prefix / "etc/gshp/gshp.yaml"
    assert "state_dir: /var/lib/gshp" in config.read_text(encoding="utf-8")
    checked = subprocess.run([str(gshp), "check-config", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the rules engine is compiled where a C compiler is, and runs in pure Python elsewhere
    engine = subprocess.run([str(gshp.parent / "python"), "-c", "import rules; print(rules.ENGINE)"],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    assert engine.stdout.strip() == ("compiled" if shutil.which("gcc") else "python"), done.stdout + engine.stderr

    state = prefix / "var/lib/gshp"
    assert mode(state) == 0o700 and state.stat().st_uid == account.pw_uid
    assert mode(prefix / "etc/gshp/gshp.env") == 0o600
    assert mode(config) == 0o640 and config.stat().st_gid == account.pw_gid
    unit = (prefix / "etc/systemd/system/gshp.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/gshp/.venv/bin/gshp run --config /etc/gshp/gshp.yaml" in unit
    assert "StateDirectoryMode=0700" in unit

    config.write_text(config.read_text(encoding="utf-8") + "# edited by the operator\n", encoding="utf-8")
    again = install(prefix, user)
    assert again.returncode == 0, again.stderr[-3000:]
    assert config.read_text(encoding="utf-8").endswith("# edited by the operator\n")
    assert "created user" not in again.stdout
