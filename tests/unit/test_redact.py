"""One redaction for every text that leaves the process: URLs with credentials, secret-named values, webhook
keys in paths, auth headers and the configured secrets themselves, in log records of any logger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.redact import redact, register_secrets, url_secrets
from gshp.config import parse_config

REPO = Path(__file__).resolve().parents[2]



@pytest.fixture(autouse=True)
def no_registered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no configured secrets: configs loaded by earlier tests registered theirs
    (a station password such as 123456 would mask part of an unrelated URL here)."""
    import collector.redact
    monkeypatch.setattr(collector.redact, "_registered", ())
    monkeypatch.setattr(collector.redact, "_registered_re", None)

@pytest.mark.parametrize(("text", "secrets", "kept"), [
    ("cannot reach InfluxDB at http://admin:PwSecret111@10.0.0.5:8086/?token=Tk-9f8e7d&db=gshp: ConnectionError",
     ["PwSecret111", "Tk-9f8e7d", "admin:"], ["10.0.0.5:8086", "db=gshp", "ConnectionError"]),
    ("POST https://open.feishu.cn/open-apis/bot/v2/hook/4f1c2d3e-aaaa-bbbb-cccc-0123456789ab failed",
     ["4f1c2d3e-aaaa"], ["open.feishu.cn/open-apis/bot/v2/hook/***"]),
    ("Max retries exceeded with url: /open-apis/bot/v2/hook/P4thS3cret9?apikey=Ak-Zz9911 (Caused by …)",
     ["P4thS3cret9", "Ak-Zz9911"], ["/open-apis/bot/v2/hook/***?apikey=***"]),
    ("https://hooks.slack.com/services/T0001AB/B0002CD/XXXXXXXXXXXXXXXXXXXXXXXX",
     ["XXXXXXXXXXXXXXXXXXXXXXXX"], ["hooks.slack.com/services/"]),
    ("https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=xyz%2B",
     ["abc123", "xyz"], ["robot/send", "timestamp=1"]),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx", ["693a91f6"], ["cgi-bin/webhook/send"]),
    ("headers {'Authorization': 'Bearer tok-enforce-0f9e8d7c6b5a', 'X-Api-Key': 'k-1'}",
     ["tok-enforce", "k-1"], ["Authorization", "X-Api-Key"]),
    ("Authorization: Basic YWRtaW46cGFzc3dvcmQ=", ["YWRtaW46"], ["Authorization"]),
    ('{"password": "hunter22", "client_secret": "cs-1", "accessKey": "AK1"}', ["hunter22", "cs-1", "AK1"],
     ['"password": "***"']),
    ("login password='hunter22' apikey=zz9 api_key=yy8", ["hunter22", "zz9", "yy8"], ["login"]),
])
def test_secrets_in_text_are_masked_and_the_rest_kept(text: str, secrets: list[str], kept: list[str]) -> None:
    out = redact(text)
    assert not [s for s in secrets if s in out], out
    assert all(k in out for k in kept), out


def test_ordinary_words_that_resemble_secret_names_are_kept() -> None:
    text = "signal_pct=55 group=hour design=a state in /var/lib/gshp/test_a_rather_long_name_1234/outbox.sqlite"
    assert redact(text) == text
    assert redact("a bearer token is required") == "a bearer token is required"


def test_registered_secrets_are_masked_anywhere_also_url_encoded() -> None:
    register_secrets(["S3cr3t/with space+plus", "tiny", None])
    out = redact("sent S3cr3t/with space+plus and S3cr3t%2Fwith%20space%2Bplus; tiny stays")
    assert "S3cr3t" not in out and out.count("***") == 2 and "tiny stays" in out


def test_the_secret_parts_of_a_url_are_listed_for_registration() -> None:
    url = "http://admin:Pw%40111@h:1/open-apis/bot/v2/hook/Abc12345?token=T1%2F2&db=x"
    assert {"Pw%40111", "Pw@111", "Abc12345", "T1%2F2", "T1/2"} <= set(url_secrets(url))
    assert "x" not in url_secrets(url) and "admin" not in url_secrets(url)


def test_loading_a_config_registers_its_secrets() -> None:
    parse_config("""\
state_dir: /tmp/gshp
influx: {url: "http://admin:Reg-Pw-0042@127.0.0.1:9/?token=Reg-Tok-0042", api: v1, bucket: gshp}
notify:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook/Reg-Path-0042", secret: Reg-Sec-0042,
     headers: {Authorization: "Bearer Reg-Hdr-0042"}}
  - {name: ding, type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=Reg-Ding-0042"}
""", "city.yaml", env={})
    out = redact("Reg-Pw-0042 Reg-Tok-0042 Reg-Path-0042 Reg-Sec-0042 Reg-Hdr-0042 Reg-Ding-0042")
    assert "Reg-" not in out, out


def test_every_log_record_is_redacted_whatever_logger_handler_or_traceback() -> None:
    # a separate interpreter: the record factory is process-wide, installed once at start by `gshp`
    code = """
import logging, sys, threading
from collector.redact import install_log_redaction, register_secrets
install_log_redaction()
register_secrets(["Cfg-Secret-77"])
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
lib = logging.getLogger("urllib3.somewhere"); lib.addHandler(handler); lib.propagate = False
lib.warning("retrying %s", "http://u:Pw-in-url-1@h/?token=Tk-in-url-2")
try:
    raise ConnectionError("url: /bot/v2/hook/Path-Key-33?apikey=Api-Key-44 Cfg-Secret-77")
except ConnectionError:
    lib.exception("failed")
def fail():
    raise RuntimeError("Cfg-Secret-77 in a thread")
t = threading.Thread(target=fail)
t.start(); t.join()
raise SystemExit("done")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert "retrying http://***@h/?token=***" in out and "hook/***?apikey=***" in out, out
    assert "Traceback" in out and "RuntimeError" in out  # the tracebacks are still there, redacted
    for secret in ("Pw-in-url-1", "Tk-in-url-2", "Path-Key-33", "Api-Key-44", "Cfg-Secret-77"):
        assert secret not in out, out
