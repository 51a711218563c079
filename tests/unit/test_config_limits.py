"""Config input limits: an alias bomb, an oversized or too deeply nested file, and free text with control
characters or bidirectional overrides are refused with a clear `file:line: field: message` error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from gshp.config import ConfigError, load_config, parse_config
from gshp.config.loader import MAX_ALIAS_VALUES, MAX_CONFIG_BYTES
from rules.settings import MaintenanceWindow
from tests.helpers import in_english

REPO = Path(__file__).resolve().parents[2]

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
sites: *i
"""
"""The "billion laughs" of YAML: 9 levels of nine aliases each, 3.9 × 10⁸ strings once expanded."""

SITE = """\
state_dir: /tmp/gshp
sites:
  - id: hehua-plaza
    name: {name}
    district: {district}
    operator: {operator}
    meters: [{{id: E1, role: extraction}}, {{id: R1, role: reinjection}}]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "city.yaml", env={})
    return [in_english(p) for p in info.value.problems]


def test_a_yaml_alias_bomb_is_refused_in_under_a_second_without_expanding_it() -> None:
    assert len(BOMB.encode()) < 410
    start = time.perf_counter()
    (msg,) = problems(BOMB)
    took = time.perf_counter() - start
    assert took < 1.0, took
    assert msg.startswith("city.yaml: is refused: its YAML aliases (*name) would expand")
    assert "billion laughs" in msg and f"{MAX_ALIAS_VALUES:,}" in msg


def test_check_config_exits_2_on_the_alias_bomb_with_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB, encoding="utf-8")
    # VmHWM, the peak of this process's own memory: ru_maxrss would also count the parent's at the fork
    code = ("import re, sys\nfrom gshp.cli import main\nrc = main(sys.argv[1:])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
            "print('peak_kb', hwm.group(1) if hwm else 0)\nsys.exit(rc)")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, "check-config", str(bomb)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert f"{bomb}: 被拒绝：其 YAML 别名" in done.stderr and "/ is refused: its YAML aliases" in done.stderr
    peak_mb = int(done.stdout.split("peak_kb")[1]) / 1024
    assert 20 < peak_mb < 400, peak_mb  # the interpreter and its imports; the bomb took 1.4 GB and kept growing
    assert took < 30, took  # start-up included; the refusal itself is timed in-process above


def test_aliases_that_reuse_a_few_settings_still_load() -> None:
    meters = "meters: &m [{id: E1, role: extraction}, {id: R1, role: reinjection}]"
    sites = [f"  - {{id: s0, name: 站点0, district: &d 宛城区, {meters}}}"]
    sites += [f"  - {{id: s{i}, name: 站点{i}, district: *d, meters: *m}}" for i in range(1, 300)]
    config = parse_config("state_dir: /tmp/gshp\nsites:\n" + "\n".join(sites) + "\n", "city.yaml", env={})
    assert len(config.sites) == 300 and {s.district for s in config.sites} == {"宛城区"}
    assert all(len(s.meters) == 2 for s in config.sites)


def test_a_file_larger_than_the_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as info:
        load_config(big, env={})
    (p,) = info.value.problems
    assert in_english(p).startswith(f"{big}: is {big.stat().st_size:,} bytes, more than a config may be")


def test_nesting_deeper_than_the_bound_is_refused() -> None:
    deep = "sites: " + "[" * 200 + "]" * 200 + "\n"
    (msg,) = problems(deep)
    assert "nests deeper than 64 levels" in msg
    (msg,) = problems("sites: " + "[" * 5000 + "]" * 5000 + "\n")  # beyond the parser's own recursion
    assert "nests deeper than 64 levels" in msg


@pytest.mark.parametrize(("field", "value", "code"), [
    ("name", '"向阳\\r\\nBcc: all@example.org"', "U+000D"),
    ("name", '"荷花\\u202egnp.exe"', "U+202E"),
    ("district", '"宛城\\x85区"', "U+0085"),
    ("operator", '"某公司\\u2028第二行"', "U+2028"),
    ("operator", '"tab\\there"', "U+0009"),
])
def test_control_characters_and_bidi_overrides_in_free_text_are_refused_at_their_line(
        field: str, value: str, code: str) -> None:
    values = {"name": "向阳荷花广场", "district": "宛城区", "operator": "某能源公司", field: value}
    (msg,) = problems(SITE.format(**values))
    line = {"name": 4, "district": 5, "operator": 6}[field]
    assert msg.startswith(f"city.yaml:{line}: sites[0].{field}: must not contain control characters"), msg
    assert f"found {code}" in msg


def test_markdown_and_html_metacharacters_are_allowed_in_names() -> None:
    config = parse_config(SITE.format(name='"<b>**荷花** [x](http://e.example)</b> & #1"', district="宛城区",
                                      operator='"_某_ `公司`"'), "city.yaml", env={})
    assert config.sites[0].name == "<b>**荷花** [x](http://e.example)</b> & #1"


def test_free_text_of_receivers_and_tokens_refuses_line_breaks() -> None:
    text = """\
state_dir: /tmp/gshp
api:
  tokens:
    - {token: tok-viewer-0123456789, role: viewer, name: "张三\\n李四"}
notify:
  - {name: mail, type: email, host: smtp.example.org, from: "监测\\r <a@example.org>", to: [b@example.org]}
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/x", headers: {Authorization: "Bearer x\\r\\nX-Evil: 1"}}
  - {name: ding, type: dingtalk, access_token: t0k3n, at_mobiles: ["138 0000\\n0000"]}
"""
    found = problems(text)
    assert any(p.startswith("city.yaml:4: api.tokens[0].name: must not contain control characters") for p in found)
    assert any(p.startswith("city.yaml:6: notify[0].from: must not contain control characters") for p in found)
    header = next(p for p in found if p.startswith("city.yaml:7: notify[1].headers"))
    assert "must not contain control characters" in header and "X-Evil" not in header  # a secret: not echoed
    assert any(p.startswith("city.yaml:8: notify[2].at_mobiles[0]: must be a mobile number") for p in found)


def test_allowed_hosts_are_host_names_and_public_url_has_no_brackets() -> None:
    found = problems("state_dir: /tmp/gshp\napi:\n  allowed_hosts: [board.example.gov.cn, 'evil host']\n"
                     "  public_url: 'https://board.example.gov.cn/x) [y'\n")
    assert any(p.startswith("city.yaml:3: api.allowed_hosts: 'evil host' is not a host name") for p in found)
    assert any(p.startswith("city.yaml:4: api.public_url: must be an http:// or https:// URL without spaces")
               for p in found)


def test_a_maintenance_reason_with_a_line_break_is_refused() -> None:
    window = {"from": "2026-07-01T08:00:00+08:00", "to": "2026-07-01T10:00:00+08:00", "volume_cap_m3": 5}
    assert MaintenanceWindow.model_validate({**window, "reason": "回扬 R2"}).reason == "回扬 R2"
    with pytest.raises(ValidationError, match="found U\\+000A at character 3"):
        MaintenanceWindow.model_validate({**window, "reason": "回扬\nR2"})
