"""The configuration file's schema: one frozen model per section, defaults that work untuned."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from collector.fanout.settings import FanoutSettings
from collector.hj212.settings import Hj212Settings
from collector.influx.settings import InfluxSettings
from collector.modbus.settings import Gateway
from collector.model import FreeText, Site, TagText, expected_interval, meter_problems
from collector.mqtt.settings import MqttSettings
from collector.outbox import OutboxSettings
from collector.problems import ZhEn, unknown_id
from collector.seen import SeenSettings
from collector.szy206.settings import Szy206Settings
from gshp.citymap import MapSettings
from gshp.health import HealthSettings
from gshp.shard import ShardSettings, mqtt_topic_problems, plan_shards
from rules.notify.settings import ReceiverSettings
from rules.settings import RulesSettings

__all__ = ["HOST_PATTERN", "LISTEN_PATTERN", "PUBLIC_URL_PATTERN", "SECRET_FIELDS", "ApiSettings", "ApiToken",
           "Config", "OutboxSettings", "config_warnings", "cross_check",
           "shard_problems"]

SECRET_FIELDS = frozenset({"token", "password", "secret", "tokens", "access_token", "key", "headers"})
"""Keys whose values are never echoed in errors or logs."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiToken(_Frozen):
    token: SecretStr = Field(min_length=16)
    role: Literal["viewer", "enforcement", "admin"]
    name: FreeText | None = Field(default=None, max_length=100)  # who holds it, for the audit log
    districts: tuple[TagText, ...] | None = None


class ApiTls(_Frozen):
    cert: Path
    key: Path


LISTEN_PATTERN = r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$"
"""``HOST:PORT`` (an IPv6 host in brackets)."""

PUBLIC_URL_PATTERN = r"^https?://[^\s<>\"'()\\\x00-\x1f\x7f-\x9f]+$"
"""A URL that goes into links of e-mail and chat markdown as it is: no spaces, quotes, brackets or controls."""

HOST_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))(:\d{1,5})?$")
"""A Host header value: a DNS name or IPv4 address, or an IPv6 address in brackets, with an optional port."""


class ApiSettings(_Frozen):
    listen: str = Field(default="127.0.0.1:8080", pattern=LISTEN_PATTERN)
    tokens: tuple[ApiToken, ...] = ()
    loopback_read: bool = Field(
        default=False, description="read without a token while listening on loopback even with tokens configured "
                                   "(the demo: anyone on this machine reads, acknowledging needs a token); without "
                                   "tokens a loopback API is readable anyway, and another address never is")
    tls: ApiTls | None = None
    public_url: str | None = Field(default=None, pattern=PUBLIC_URL_PATTERN)
    """The board's address as officers reach it, for links in notifications."""
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="Host header values the API answers besides localhost, 127.0.0.1, [::1] and the "
                                "host of public_url (with or without a port): the names it is reached by through "
                                "a proxy or on the network. Where reading needs no token, and wherever this is "
                                "set, every other Host is refused (421)")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for host in v:
            if not HOST_PATTERN.match(host):
                raise ValueError(ZhEn(f"{host!r} 不是主机名：请像在网址中那样写名称或地址，可带端口，"
                                      "如 gshp.example.gov.cn、10.0.0.8:8080 或 [fd00::8]",
                                      f"{host!r} is not a host name: write a name or address as in a URL, with an "
                                      "optional port, e.g. gshp.example.gov.cn, 10.0.0.8:8080 or [fd00::8]"))
        return tuple(h.lower() for h in v)

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, v: str) -> str:
        if int(v.rsplit(":", 1)[1]) > 65535:
            raise ValueError(ZhEn("须为 主机:端口，端口在 0-65535 之间，如 127.0.0.1:8080",
                                  "must be HOST:PORT with a port of 0-65535, e.g. 127.0.0.1:8080"))
        return v

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def loopback(self) -> bool:
        """Whether the API listens on this machine only (127.0.0.0/8, ::1, localhost)."""
        if self.host in ("localhost", ""):
            return True
        try:
            return ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def open_read(self) -> bool:
        """Whether a request without a token may read."""
        return self.loopback and (not self.tokens or self.loopback_read)

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class Config(_Frozen):
    timezone: str = "Asia/Shanghai"
    state_dir: Path = Path("/var/lib/gshp")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    influx: InfluxSettings = InfluxSettings(api="v1")  # type: ignore[arg-type]
    mqtt: MqttSettings | None = None
    hj212: Hj212Settings | None = None
    szy206: Szy206Settings | None = None
    outbox: OutboxSettings = OutboxSettings()
    gateways: tuple[Gateway, ...] = ()
    modbus_profiles: Path | None = None  # a directory of extra register profiles (*.yaml)
    sites: tuple[Site, ...] = ()
    rules: RulesSettings = RulesSettings()
    notify: tuple[ReceiverSettings, ...] = ()
    api: ApiSettings = ApiSettings()
    shard: ShardSettings = ShardSettings()
    fanout: FanoutSettings = FanoutSettings()
    readings: SeenSettings = SeenSettings()
    health: HealthSettings = HealthSettings()
    map: MapSettings = MapSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(ZhEn("不是 IANA 时区名（如 Asia/Shanghai、UTC）",
                                  "is not an IANA time zone name (e.g. Asia/Shanghai, UTC)")) from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def intervals(self, poll_speed: float = 1.0) -> dict[tuple[str, str], timedelta]:
        """Every meter's expected reporting interval by (site, meter) (`collector.model.expected_interval`).
        A gateway polls on the wall clock: under a clock running `poll_speed` times faster (the demo's), its
        readings are that much further apart in device time."""
        gateways = {g.id: g.interval * poll_speed for g in self.gateways}
        return {(s.id, m.id): expected_interval(m, gateways) for s in self.sites for m in s.meters}

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)


def config_warnings(config: Config) -> list[ZhEn]:
    """What is valid but most likely not meant: a config that collects nothing or stores by default."""
    out = []
    if not config.sites:
        out.append(ZhEn("未列出任何站点：不会采集或评估任何数据（在 `sites:` 下添加，参见 deploy/examples/）",
                        "lists no sites: nothing is collected or evaluated (add them under `sites:`, see "
                        "deploy/examples/)"))
    if "influx" not in config.model_fields_set:
        influx = config.influx
        out.append(ZhEn(f"没有 `influx:` 节：读数将写入默认的 InfluxDB {influx.url}（api {influx.api.value}，"
                        f"数据库 {influx.bucket}）；请写明写入何处",
                        f"has no `influx:` section: readings go to the default InfluxDB at {influx.url} "
                        f"(api {influx.api.value}, database {influx.bucket}); say where they go"))
    return out


def cross_check(config: Config) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Checks that span sections, and the site's meter checks at the offending meter; yields (data path,
    message). The loader runs them over whatever part of the file is valid."""
    gateways: set[str] = set()
    for i, g in enumerate(config.gateways):
        if g.id in gateways:
            yield ("gateways", i, "id"), ZhEn(f"网关编号 {g.id!r} 出现了两次", f"gateway id {g.id!r} appears twice")
        gateways.add(g.id)
    sites: set[str] = set()
    for i, s in enumerate(config.sites):
        if s.id in sites:
            yield ("sites", i, "id"), ZhEn(f"站点编号 {s.id!r} 出现了两次", f"site id {s.id!r} appears twice")
        sites.add(s.id)
        for path, message in meter_problems(s.meters):
            yield ("sites", i, *path), message
        for j, m in enumerate(s.meters):
            if m.modbus is not None and m.modbus.gateway not in gateways:
                yield (("sites", i, "meters", j, "modbus", "gateway"),
                       unknown_id("`gateways:` 下没有此网关", "gateway under `gateways:`", gateways))
            if m.mqtt is not None and config.mqtt is None:
                yield (("sites", i, "meters", j, "mqtt"),
                       ZhEn("MQTT 计量表需要 `mqtt:`（消息服务器）一节",
                            "an MQTT meter needs the `mqtt:` broker section"))
            yield from _telemetry_problems(config, i, j)
    districts = {s.district for s in config.sites}
    for name in config.rules.districts:
        if name not in districts:
            yield ("rules", "districts", name), _no_district(districts)
    yield from config.rules.problems({s.id: s.district for s in config.sites})
    yield from shard_problems(config, config.shard.count)
    for i, t in enumerate(config.api.tokens):
        for k, name in enumerate(t.districts or ()):
            if name not in districts:
                yield ("api", "tokens", i, "districts", k), _no_district(districts)
    receivers: set[str] = set()
    for i, r in enumerate(config.notify):
        if r.name in receivers:
            yield ("notify", i, "name"), ZhEn(f"接收方名称 {r.name!r} 出现了两次",
                                              f"receiver name {r.name!r} appears twice")
        receivers.add(r.name)
        for k, name in enumerate(r.match.district):
            if name not in districts:
                yield ("notify", i, "match", "district", k), _no_district(districts)
        for k, name in enumerate(r.match.site):
            if name not in sites:
                yield ("notify", i, "match", "site", k), unknown_id("`sites:` 下没有此站点", "site under `sites:`",
                                                                    sites)


def _no_district(districts: set[str]) -> str:
    """A district no site is in: a token, receiver or override naming it would never see anything."""
    return unknown_id("没有站点属于此辖区", "district of any site", districts)


def _telemetry_problems(config: Config, i: int, j: int) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """An HJ 212 meter needs the `hj212:` listener and its MN among the stations; an SZY 206 meter the
    `szy206:` listener."""
    m = config.sites[i].meters[j]
    if m.hj212 is not None:
        if config.hj212 is None:
            yield ("sites", i, "meters", j, "hj212"), ZhEn("HJ 212 计量表需要 `hj212:`（监听）一节",
                                                           "an HJ 212 meter needs the `hj212:` listener section")
        elif m.hj212.mn not in {s.mn for s in config.hj212.stations}:
            yield (("sites", i, "meters", j, "hj212", "mn"),
                   ZhEn(f"MN {m.hj212.mn!r} 不在 `hj212: stations:` 之下（连同其密码一起添加）",
                        f"MN {m.hj212.mn!r} is not under `hj212: stations:` (add it with its password)"))
    if m.szy206 is not None and config.szy206 is None:
        yield ("sites", i, "meters", j, "szy206"), ZhEn("SZY 206 计量表需要 `szy206:`（监听）一节",
                                                        "an SZY 206 meter needs the `szy206:` listener section")


def shard_problems(config: Config, count: int) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Gateways whose sites fall in different shards, pins out of range, topics shared across shards."""
    if count <= 1 and not any(g.shard for g in config.gateways):
        return
    plan = plan_shards(config.sites, config.gateways, count)
    yield from plan.problems
    if not plan.problems:
        yield from mqtt_topic_problems(config.sites, plan)
