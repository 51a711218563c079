"""`notify:` in the config file (typed receivers, errors with lines, secrets hidden) and the
`gshp notify test|status|retry|silence` commands against a webhook peer on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gshp.cli import main
from gshp.config import ConfigError, parse_config
from rules.notify import Notifier, sample_event
from rules.notify.settings import DingTalkSettings, EmailSettings, WeComSettings
from tests.helpers import in_english
from tests.notify_peers import HttpPeer

BASE = """\
timezone: Asia/Shanghai
state_dir: {state}
api: {{listen: 127.0.0.1:8080, public_url: https://board.example.gov.cn}}
notify:
"""


def config_text(state: Path, receivers: str) -> str:
    return BASE.format(state=state) + receivers


def test_receivers_are_typed_by_their_type_key_and_robot_tokens_leave_the_url(tmp_path: Path) -> None:
    cfg = parse_config(config_text(tmp_path, """\
  - {name: ding, type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=T0K", secret: SECx}
  - {name: wx, type: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K3Y"}
  - {name: mail, type: email, host: smtp.x.cn, security: ssl, from: a@x.cn, to: [b@x.cn]}
"""), env={})
    ding, wx, mail = cfg.notify
    assert isinstance(ding, DingTalkSettings) and ding.access_token.get_secret_value() == "T0K"
    assert ding.url == "https://oapi.dingtalk.com/robot/send"
    assert isinstance(wx, WeComSettings) and wx.key.get_secret_value() == "K3Y" and "K3Y" not in wx.url
    assert isinstance(mail, EmailSettings) and mail.effective_port == 465
    assert "T0K" not in repr(cfg) and "K3Y" not in repr(cfg) and "SECx" not in repr(cfg)


def test_receiver_errors_name_the_line_and_field_and_hide_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_text(tmp_path, """\
  - {name: hook, type: webhook, url: "ftp://h/x?token=hunter2", secret: s}
  - {name: mq, type: mqtt, topic: "a/#"}
  - {name: x, type: pager}
  - {name: ding, type: dingtalk, secret: hunter3, access_token: [1]}
"""), "city.yaml", env={})
    out = [in_english(p) for p in info.value.problems]
    assert any(m.startswith("city.yaml:5: notify[0].url: must be an http") for m in out)
    assert any(m.startswith("city.yaml:6: notify[1].topic:") and "wildcards" in m for m in out)
    assert any(m.startswith("city.yaml:7: notify[2].type: is not one of") and "'webhook'" in m for m in out)
    assert any(m.startswith("city.yaml:8: notify[3].access_token:") and "(hidden)" in m for m in out)
    assert all("hunter2" not in m and "hunter3" not in m for m in out + [str(p) for p in info.value.problems])


def test_duplicate_receiver_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="receiver name 'a' appears twice"):
        parse_config(config_text(tmp_path, """\
  - {name: a, type: mqtt}
  - {name: a, type: mqtt}
"""), env={})


@pytest.fixture
def peer() -> HttpPeer:
    p = HttpPeer().start()
    yield p  # type: ignore[misc]
    p.stop()


def write_config(tmp_path: Path, peer: HttpPeer) -> Path:
    f = tmp_path / "city.yaml"
    f.write_text(config_text(tmp_path / "state", f"""\
  - {{name: hook, type: webhook, url: "{peer.url}/in", secret: s3cret, group_wait: 0s}}
  - {{name: ding, type: dingtalk, url: "{peer.url}/robot/send?access_token=T0K"}}
"""), encoding="utf-8")
    return f


def test_notify_test_sends_the_sample_and_reports(tmp_path: Path, peer: HttpPeer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = write_config(tmp_path, peer)
    assert main(["notify", "test", "--config", str(f), "--receiver", "ding"]) == 0
    out = capsys.readouterr().out
    assert "OK: ding accepted it" in out and "T0K" not in out
    assert peer.received[0].query["access_token"] == "T0K"
    peer.respond = lambda r: (500, b"boom")
    assert main(["notify", "test", "--config", str(f), "--receiver", "hook"]) == 1
    assert "FAILED (retryable)" in capsys.readouterr().out
    assert main(["notify", "test", "--config", str(f), "--receiver", "nope"]) == 2
    assert "known: hook, ding" in capsys.readouterr().err


def test_notify_status_lists_failed_and_dead_per_receiver_and_retry_requeues(
        tmp_path: Path, peer: HttpPeer, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_config(tmp_path, peer)
    peer.respond = lambda r: (403, b"forbidden")
    from gshp.config import load_config

    cfg = load_config(f)
    n = Notifier(cfg.notify, cfg.state_dir / "notify.sqlite")
    n.submit(sample_event())
    n.tick()
    n.deliver_once("hook")
    n.stop()
    assert main(["notify", "status", "--config", str(f), "--list"]) == 0
    out = capsys.readouterr().out
    assert "hook" in out and "HTTP 403" in out and "dead" in out and "T0K" not in out
    assert main(["notify", "retry", "--config", str(f), "--receiver", "hook"]) == 0
    assert "1 dead notification(s) queued again" in capsys.readouterr().out


def test_silence_add_list_expire(tmp_path: Path, peer: HttpPeer, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_config(tmp_path, peer)
    assert main(["notify", "silence", "add", "--config", str(f), "--match", "site=hehua-plaza", "--match",
                 "rule=~balance_.*", "--duration", "2h", "--author", "张三", "--comment", "回扬 R2"]) == 0
    sid = capsys.readouterr().out.split()[1].rstrip(":")
    assert main(["notify", "silence", "list", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert sid in out and "active" in out and "site=hehua-plaza, rule=~balance_.*" in out and "张三" in out
    assert main(["notify", "silence", "expire", "--config", str(f), sid]) == 0
    capsys.readouterr()
    assert main(["notify", "silence", "list", "--config", str(f)]) == 0
    assert "no silences" in capsys.readouterr().out
    assert main(["notify", "silence", "add", "--config", str(f), "--match", "nonsense", "--duration", "1h",
                 "--author", "a", "--comment", "c"]) == 2
