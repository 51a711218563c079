"""Topic filters from configuration, and the routing table from a message's topic to its meters.

A meter's `mqtt.topic` is an MQTT topic filter: exact (`dtu/860012345/up`), with wildcards (`+`, `#`),
or with the named level `{key}`, which subscribes as `+` and selects the meter whose key
(`mqtt.key`, default the meter id) equals that level's text. Meters sharing a filter share its profile;
when several do, every message must name its meter (by `{key}` or through the profile).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from collector.model import Site
from collector.mqtt.decode import Binding
from collector.mqtt.errors import PlanError
from collector.mqtt.profile import PayloadFormat, PayloadProfile
from collector.mqtt.registers import NO_REGISTER_CODEC, RegisterCodec
from collector.problems import KNOWN_ZH, MeterProblem, ZhEn

__all__ = ["Route", "Router", "TopicFilter", "plan_routes"]

KEY_LEVEL = "{key}"


@dataclass(frozen=True, slots=True)
class TopicFilter:
    text: str
    key_level: int | None  # index of the `{key}` level
    wild: bool
    # a wildcard filter's levels, matched against every topic it may take; an exact filter (one a meter, a
    # city has thousands) is found by its text and splits it when asked
    split: tuple[str, ...] | None

    @classmethod
    def parse(cls, text: str) -> TopicFilter:
        if not text or len(text.encode()) > 65535:
            raise ValueError(ZhEn("主题长度须为 1..65535 字节", "a topic filter is 1..65535 bytes"))
        if "\x00" in text:
            raise ValueError(ZhEn("主题不得含 NUL 字符", "a topic filter must not contain NUL"))
        if text.startswith("$share/"):
            raise ValueError(ZhEn("请写普通主题；共享订阅组取自 mqtt.shared_group",
                                  "write the plain topic; the shared group comes from mqtt.shared_group"))
        levels = tuple(text.split("/"))
        key_level = None
        for i, lv in enumerate(levels):
            if lv == "#" and i != len(levels) - 1:
                raise ValueError(ZhEn("'#' 须为最后一级", "'#' must be the last level"))
            if lv == KEY_LEVEL:
                if key_level is not None:
                    raise ValueError(ZhEn("每个主题只能有一级 {key}", "only one {key} level per topic"))
                key_level = i
            elif ("+" in lv and lv != "+") or ("#" in lv and lv != "#") or ("{" in lv or "}" in lv):
                raise ValueError(ZhEn(f"层级 {lv!r}：通配符 '+'、'#' 和 '{{key}}' 须独占一整级",
                                      f"level {lv!r}: wildcards '+', '#' and '{{key}}' fill a whole level"))
        wild = any(lv in ("+", "#", KEY_LEVEL) for lv in levels)
        return cls(text, key_level, wild, levels if wild else None)

    @property
    def levels(self) -> tuple[str, ...]:
        return self.split if self.split is not None else tuple(self.text.split("/"))

    @property
    def subscription(self) -> str:
        """The filter as sent to the broker ({key} → +)."""
        return "/".join("+" if lv == KEY_LEVEL else lv for lv in self.levels)

    def match(self, topic_levels: Sequence[str]) -> tuple[bool, str | None]:
        """(matches, the {key} level's text)."""
        key, levels = None, self.levels
        for i, lv in enumerate(levels):
            if lv == "#":
                return (i > 0 or not topic_levels[0].startswith("$")), key
            if i >= len(topic_levels):
                return False, None
            t = topic_levels[i]
            if lv == "+" or lv == KEY_LEVEL:
                if i == 0 and t.startswith("$"):
                    return False, None
                if lv == KEY_LEVEL:
                    key = t
            elif lv != t:
                return False, None
        return len(topic_levels) == len(levels), key


@dataclass(frozen=True, slots=True)
class Route:
    filter: TopicFilter
    profile: PayloadProfile
    meters: Mapping[str, Binding]  # by key


class Router:
    """Topic → (route, {key} text). Exact topics by dictionary; wildcard filters in config order."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact = {r.filter.text: r for r in self.routes if not r.filter.wild}
        self._wild = [r for r in self.routes if r.filter.wild]

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.filter.subscription for r in self.routes))

    def route(self, topic: str) -> tuple[Route, str | None] | None:
        r = self._exact.get(topic)
        if r is not None:
            return r, None
        if self._wild:
            levels = topic.split("/")
            for r in self._wild:
                ok, key = r.filter.match(levels)
                if ok:
                    return r, key
        return None


def plan_routes(sites: Iterable[Site], profiles: Mapping[str, PayloadProfile],
                codec: RegisterCodec = NO_REGISTER_CODEC) -> Router:
    """Validate the MQTT meters against the profiles and build the router; raises `PlanError` listing
    every problem. No I/O."""
    problems: list[str] = []
    by_filter: dict[str, tuple[TopicFilter, PayloadProfile, dict[str, Binding]]] = {}
    first_at: dict[str, tuple[int, int]] = {}  # filter → position of its first meter
    for i, site in enumerate(sites):
        for j, m in enumerate(site.meters):
            if m.mqtt is None:
                continue
            where = f"sites[{site.id}].meters[{m.id}].mqtt"
            try:
                tf = TopicFilter.parse(m.mqtt.topic)
            except ValueError as exc:
                said: str = exc.args[0] if exc.args else str(exc)  # in both languages as raised
                problems.append(MeterProblem(f"{where}.topic {m.mqtt.topic!r}: {said}", site=i, meter=j,
                                             field="mqtt.topic", message=said))
                continue
            profile = profiles.get(m.mqtt.profile)
            if profile is None:
                known = sorted(profiles)
                message = ZhEn(f"不是已知的报文配置{KNOWN_ZH}{'、'.join(known)}；可在 mqtt.profiles_dir 中添加自己的）",
                               f"is not a known payload profile (known: {', '.join(known)}; "
                               "add your own in mqtt.profiles_dir)")
                problems.append(MeterProblem(f"{where}.profile {m.mqtt.profile!r} {message}", site=i, meter=j,
                                             field="mqtt.profile", message=message))
                continue
            if (profile.format is PayloadFormat.REGISTERS and profile.registers is not None
                    and not codec.knows(profile.registers.profile)):
                message = ZhEn(f"需要寄存器配置 {profile.registers.profile!r}，但它不可用",
                               f"needs register profile {profile.registers.profile!r}, which is not available")
                problems.append(MeterProblem(f"{where}.profile {profile.name!r} {message}", site=i, meter=j,
                                             field="mqtt.profile", message=message))
            key = m.mqtt.key or m.id
            entry = by_filter.setdefault(tf.text, (tf, profile, {}))
            first_at.setdefault(tf.text, (i, j))
            if entry[1].name != profile.name:
                message = ZhEn(f"主题 {tf.text!r} 已按报文配置 {entry[1].name!r} 解码；"
                               "共用一个主题的计量表共用其报文配置",
                               f"topic {tf.text!r} is already decoded with profile {entry[1].name!r}; "
                               "meters sharing a topic share its profile")
                problems.append(MeterProblem(f"{where}: {message}", site=i, meter=j,
                                             field="mqtt.profile", message=message))
                continue
            if key in entry[2]:
                other = entry[2][key]
                message = ZhEn(f"主题 {tf.text!r} 上的键 {key!r} 已属于计量表 {other.site}/{other.meter}；"
                               "请给其中一个不同的 mqtt.key",
                               f"key {key!r} on topic {tf.text!r} is already meter {other.site}/{other.meter}; "
                               "give one of them a distinct mqtt.key")
                problems.append(MeterProblem(f"{where}: {message}", site=i, meter=j,
                                             field="mqtt.key" if m.mqtt.key else "mqtt.topic", message=message))
                continue
            entry[2][key] = Binding(site.id, m.id, m.role, key)
    for tf, profile, meters in by_filter.values():
        if len(meters) > 1 and tf.key_level is None and not profile.keyed:
            names = [f"{b.site}/{b.meter}" for b in meters.values()]
            message = ZhEn(f"主题 {tf.text!r} 由 {'、'.join(names)} 共用，但报文配置 {profile.name!r} 无法区分消息属于"
                           "哪个计量表：请给每个计量表各自的主题，或用一级 {key}，或用带键记录的报文配置",
                           f"topic {tf.text!r} is shared by {', '.join(names)}, but profile {profile.name!r} cannot "
                           "say which meter a message is for: give each meter its own topic, use a {key} level, or "
                           "a profile with keyed records")
            site_at, meter_at = first_at[tf.text]
            problems.append(MeterProblem(message, site=site_at, meter=meter_at, field="mqtt.topic",
                                         message=message))
    if problems:
        raise PlanError(problems)
    return Router(Route(tf, p, dict(ms)) for tf, p, ms in by_filter.values())
