"""A config file other users can read is checked for secrets written into it; only lines and keys are named."""

from __future__ import annotations

import os
from pathlib import Path

from gshp.config.exposure import exposed_secrets, readable_by_others

CONFIG = """\
timezone: Asia/Shanghai
influx: {url: 'http://127.0.0.1:8086', api: v2, org: w, bucket: gshp, token: "${INFLUX_TOKEN}"}
mqtt:
  host: 127.0.0.1
  username: gshp
  password: PwSecret111            # written into the file
  tls: {ca: /etc/gshp/ca.pem, key: /etc/gshp/client.key}
notify:
  - {name: hook, type: webhook, url: 'https://hooks.example/x?token=abc123', secret: "${HOOK_SECRET}"}
  - {name: ding, type: dingtalk, url: 'https://oapi.dingtalk.com/robot/send?access_token=${DING}'}
  - name: mail
    smtp_url: smtp://officer:Mail%40pw@mail.example:465
    password_file: /etc/gshp/smtp.pass
api:
  tokens: [{name: officer, token: 0123456789abcdef, role: officer}]
  # token: commented-out-secret
"""


def test_literal_secrets_are_found_and_values_from_the_environment_are_not() -> None:
    assert exposed_secrets(CONFIG) == [
        "line 6 (password)",
        "line 9 (a URL with credentials)",
        "line 12 (a URL with credentials)",
        "line 15 (token)",
    ]
    assert "PwSecret111" not in " ".join(exposed_secrets(CONFIG))


def test_a_file_readable_by_group_or_others_is_told_apart(tmp_path: Path) -> None:
    f = tmp_path / "gshp.yaml"
    f.write_text(CONFIG)
    os.chmod(f, 0o600)
    assert not readable_by_others(f)
    os.chmod(f, 0o640)
    assert readable_by_others(f)
