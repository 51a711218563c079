"""Typed configuration of the receivers under `notify:` — one model per `type`, chosen by that key.

```yaml
notify:
  - name: wancheng-enforcement      # unique; used by `gshp notify test --receiver` and in status output
    type: dingtalk                  # webhook | email | dingtalk | wecom | mqtt
    access_token: "${DINGTALK_TOKEN}"
    secret: "${DINGTALK_SECRET}"
    match: {kind: [discharge], district: [宛城区]}
```

Every receiver shares routing (`match`), grouping (`group_by`, `group_wait`, `group_interval`,
`repeat_interval`), `send_resolved`, `language`, `templates` and the retry budget (`retry`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerting.model import Severity
from collector.duration import Duration
from collector.model import FreeText
from collector.mqtt.settings import MqttProtocol, MqttTls
from collector.problems import ZhEn

__all__ = [
    "DingTalkSettings",
    "EmailSettings",
    "Language",
    "Match",
    "MqttReceiverSettings",
    "ReceiverSettings",
    "RetryPolicy",
    "WeComSettings",
    "WebhookSettings",
]

Language = Literal["zh", "en"]

GROUP_LABELS = ("site", "district", "rule", "kind", "severity", "id", "change", "state")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Match(_Frozen):
    """Which alerts a receiver gets. Each list is "any of"; the lists combine with "and"; empty = all."""

    severity: tuple[Severity, ...] = ()
    min_severity: Severity | None = None  # e.g. `high` = critical and high
    kind: tuple[Literal["discharge", "evasion", "meter_fault", "compliance", "calibration", "data_quality"],
                 ...] = ()
    district: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()


class RetryPolicy(_Frozen):
    """How long a failing receiver is retried before a notification goes to the dead letters."""

    max_attempts: int = Field(default=50, ge=1, le=10_000)
    backoff_base: Duration = timedelta(seconds=2)
    backoff_cap: Duration = timedelta(minutes=5)


class _Receiver(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    match: Match = Match()
    group_by: tuple[str, ...] = ("site",)
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)  # 0s: never repeat a firing alert
    send_resolved: bool = True
    language: Language = "zh"
    templates: Path | None = None  # a directory whose *.j2 files override the shipped ones
    timeout: Duration = timedelta(seconds=10)
    retry: RetryPolicy = RetryPolicy()

    @field_validator("group_by")
    @classmethod
    def _known_labels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [x for x in v if x not in GROUP_LABELS]
        if bad:
            raise ValueError(ZhEn(f"不能按 {'、'.join(bad)} 分组：可用 {'、'.join(GROUP_LABELS)}",
                                  f"cannot group by {', '.join(bad)}: use any of {', '.join(GROUP_LABELS)}"))
        return v


_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_HEADER_BREAK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(ZhEn("须为 http:// 或 https:// 地址", "must be an http:// or https:// URL"))
    if any(c.isspace() or not c.isprintable() for c in v):
        raise ValueError(ZhEn("地址中不得有空格或控制字符（请用百分号编码：%20）",
                              "must be a URL without spaces or control characters (percent-encode them: %20)"))
    return v


def _lift_query_secret(data: Any, param: str, field: str) -> Any:
    """Accept a robot URL pasted with its token (`?access_token=…`): move the token to its own field."""
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return data
    parts = urlsplit(data["url"])
    query = parse_qsl(parts.query, keep_blank_values=True)
    found = [v for k, v in query if k == param]
    if not found:
        return data
    out = dict(data)
    if out.get(field) not in (None, "", found[0]):
        raise ValueError(ZhEn(f"url 中带有 {param}，同时又设置了 `{field}`：只保留其一",
                              f"the url carries a {param} and `{field}` is set too: keep one of them"))
    out[field] = found[0]
    out["url"] = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != param])))
    return out


class WebhookSettings(_Receiver):
    """POST of the alert event JSON; with `secret`, ``X-Gshp-Signature: sha256=<hex HMAC of the body>``."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    headers: dict[Annotated[str, Field(pattern=_HEADER_NAME)], SecretStr] = Field(default_factory=dict)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)

    @field_validator("headers")
    @classmethod
    def _header_values(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in v.items():
            if _HEADER_BREAK.search(value.get_secret_value()):
                # the value is a secret: say where, never what
                raise ValueError(ZhEn(f"请求头 {name} 的值不得含控制字符（换行会开始另一个请求头）",
                                      f"the value of header {name} must not contain control characters (a line "
                                      "break would start another header)"))
        return v


class EmailSettings(_Receiver):
    """SMTP with STARTTLS, implicit TLS (`ssl`) or none; plain text + HTML body."""

    type: Literal["email"]
    host: FreeText
    port: int | None = Field(default=None, ge=1, le=65535)  # default 587 starttls, 465 ssl, 25 none
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: FreeText | None = None
    password: SecretStr | None = None
    from_: FreeText = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$|^.*<[^@\s<>]+@[^@\s<>]+>$")
    to: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = Field(min_length=1)
    verify_tls: bool = True

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]

    @model_validator(mode="after")
    def _auth_pairs(self) -> EmailSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError(ZhEn("username 与 password 须成对出现：两者都设或都不设",
                                  "username and password go together: set both or neither"))
        return self


class DingTalkSettings(_Receiver):
    """A DingTalk custom group robot (自定义机器人), markdown messages, optional signed webhook (加签)."""

    type: Literal["dingtalk"]
    url: str = "https://oapi.dingtalk.com/robot/send"
    access_token: SecretStr
    secret: SecretStr | None = None  # the SEC… string of the robot's 加签 security setting
    at_mobiles: tuple[Annotated[str, Field(pattern=r"^\+?[0-9][0-9-]{2,19}$")], ...] = ()
    at_all: bool = False

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data: Any) -> Any:
        return _lift_query_secret(data, "access_token", "access_token")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class WeComSettings(_Receiver):
    """A WeCom group robot (企业微信群机器人), markdown messages."""

    type: Literal["wecom"]
    url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    key: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _lift(cls, data: Any) -> Any:
        return _lift_query_secret(data, "key", "key")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class MqttReceiverSettings(_Receiver):
    """Publish each event (QoS 1) and keep each site's current alerts as a retained message."""

    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    protocol: MqttProtocol = MqttProtocol.V311
    client_id: str = Field(default="gshp-notify", min_length=1, max_length=64)
    keepalive: Duration = timedelta(seconds=30)
    topic: str = "gshp/alerts/{district}/{site}"
    state_topic: str | None = "gshp/state/{district}/{site}"  # retained; null: do not publish state
    # machines want every transition at once, and no reminders (the retained state is the reminder)
    group_wait: Duration = timedelta(0)
    group_interval: Duration = timedelta(0)
    repeat_interval: Duration = timedelta(0)

    @field_validator("topic", "state_topic")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            v.format(district="d", site="s", rule="r", kind="k", severity="x", state="f", change="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(ZhEn(f"主题模板有误（{exc}）：可用 {{district}}、{{site}}、{{rule}}、{{kind}}、"
                                  "{severity}、{state}、{change}",
                                  f"bad topic template ({exc}): use {{district}}, {{site}}, {{rule}}, {{kind}}, "
                                  "{severity}, {state}, {change}")) from None
        if "#" in v or "+" in v:
            raise ValueError(ZhEn("发布用的主题不能含通配符 # 或 +",
                                  "a topic to publish to cannot contain the wildcards # or +"))
        return v


ReceiverSettings = Annotated[
    WebhookSettings | EmailSettings | DingTalkSettings | WeComSettings | MqttReceiverSettings,
    Field(discriminator="type"),
]
"""One entry of `notify:`."""
