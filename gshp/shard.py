"""Sharding sites across processes: which shard owns a site and its Modbus gateways (pure, no I/O).

A site belongs to shard ``shard_of(site.id, N)``: the CRC-32 of its id (UTF-8) modulo N. The hash is
stable across processes, machines and Python versions (never Python's per-process randomized `hash`), so
every collector and rule worker of a deployment agrees on the owner of every site without talking to each
other. Changing N moves sites: about (N−1)/N of them change owner when N changes (see docs/scale.md).

Gateway ownership: a Modbus gateway is polled by one collector, so all the sites it serves must fall in
one shard. A gateway pinned with ``gateways[].shard: K`` takes every site it serves into shard K; an
unpinned gateway whose sites hash to different shards is refused at load, naming the sites.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.modbus.settings import Gateway
from collector.model import Site
from collector.problems import ZhEn

if TYPE_CHECKING:
    from gshp.config.schema import Config

__all__ = ["ShardPlan", "ShardSettings", "mqtt_topic_problems", "narrow", "plan_shards", "shard_of"]

_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(site_id: str, count: int) -> int:
    """The shard (0 … count−1) that owns `site_id`. Stable: CRC-32 of the UTF-8 id, modulo `count`."""
    if count < 1:
        raise ValueError("the shard count must be at least 1")
    return zlib.crc32(site_id.encode("utf-8")) % count


class ShardSettings(BaseModel):
    """`shard:` in the config file: this process's shard `index` out of `count` (also written ``k/N``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(default=0, ge=0)
    count: int = Field(default=1, ge=1, le=4096)

    @model_validator(mode="before")
    @classmethod
    def _string_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = _FORM.match(data)
            if m is None:
                raise ValueError(ZhEn("分片请写成 `k/N`（如 0/4）或 {index: k, count: N}",
                                      "write the shard as `k/N` (e.g. 0/4) or as {index: k, count: N}"))
            return {"index": int(m.group(1)), "count": int(m.group(2))}
        return data

    @model_validator(mode="after")
    def _in_range(self) -> ShardSettings:
        if self.index >= self.count:
            raise ValueError(ZhEn(f"序号 {self.index} 不小于分片数 {self.count}：分片编号为 0 … {self.count - 1}",
                                  f"index {self.index} is not below count {self.count}: "
                                  f"shards are numbered 0 … {self.count - 1}"))
        return self

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class ShardPlan:
    """Owners of every site and gateway; `problems` as (data path, message) for the config loader."""

    count: int
    sites: dict[str, int]
    gateways: dict[str, int | None]  # None: a gateway that serves no site and is not pinned
    problems: tuple[tuple[tuple[str | int, ...], str], ...] = ()

    def sites_of(self, index: int) -> list[str]:
        return [s for s, k in self.sites.items() if k == index]


def plan_shards(sites: Sequence[Site], gateways: Sequence[Gateway], count: int) -> ShardPlan:
    """Assign every site and gateway to a shard: pins first, then the hash; report every conflict."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    pins: dict[str, int] = {}
    bad_pins: set[str] = set()
    for i, g in enumerate(gateways):
        if g.shard is None:
            continue
        if g.shard >= count:
            bad_pins.add(g.id)
            problems.append((("gateways", i, "shard"), ZhEn(f"不小于分片数 {count}（分片为 0 … {count - 1}）",
                                                            f"is not below the shard count {count} "
                                                            f"(shards are 0 … {count - 1})")))
        else:
            pins[g.id] = g.shard
    served: dict[str, list[str]] = {g.id: [] for g in gateways}
    owner: dict[str, int] = {}
    for i, site in enumerate(sites):
        used = sorted({m.modbus.gateway for m in site.meters if m.modbus is not None})
        for gw in used:
            served.setdefault(gw, []).append(site.id)
        pinned = {pins[gw] for gw in used if gw in pins}
        if len(pinned) > 1:
            names = ", ".join(f"{gw} → {pins[gw]}" for gw in used if gw in pins)
            problems.append((("sites", i, "meters"), ZhEn(
                f"站点 {site.id!r} 使用的网关被固定到了不同的分片（{names}）：请把它们固定到同一分片",
                f"site {site.id!r} uses gateways pinned to different shards ({names}): pin them to one shard")))
        owner[site.id] = min(pinned) if pinned else shard_of(site.id, count)
    gw_owner: dict[str, int | None] = {}
    for i, g in enumerate(gateways):
        if g.id in pins or g.id in bad_pins:
            gw_owner[g.id] = pins.get(g.id)
            continue
        shards = sorted({owner[s] for s in served.get(g.id, [])})
        gw_owner[g.id] = shards[0] if shards else None
        if len(shards) > 1:
            by = "; ".join(f"shard {k}: " + ", ".join(s for s in served[g.id] if owner[s] == k) for k in shards)
            by_zh = "；".join(f"分片 {k}：" + "、".join(s for s in served[g.id] if owner[s] == k) for k in shards)
            problems.append((("gateways", i, "id"), ZhEn(
                f"网关 {g.id!r} 服务于不同分片的站点（{by_zh}）；一个网关只由一个采集进程轮询：请在此网关下用 "
                "`shard: K` 固定它（其站点随之归入分片 K）",
                f"gateway {g.id!r} serves sites of different shards ({by}); one collector polls "
                f"a gateway: pin it with `shard: K` under this gateway (its sites move to "
                f"shard K)")))
    return ShardPlan(count, owner, gw_owner, tuple(problems))


def mqtt_topic_problems(sites: Sequence[Site], plan: ShardPlan) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """An MQTT topic read by meters of sites in different shards would be subscribed by two collectors."""
    seen: dict[str, tuple[str, int]] = {}
    for i, site in enumerate(sites):
        for j, m in enumerate(site.meters):
            if m.mqtt is None:
                continue
            k = plan.sites[site.id]
            first = seen.setdefault(m.mqtt.topic, (site.id, k))
            if first[1] != k:
                yield (("sites", i, "meters", j, "mqtt", "topic"), ZhEn(
                    f"主题 {m.mqtt.topic!r} 也承载分片 {first[1]} 的站点 {first[0]!r}，而站点 {site.id!r} 在分片 {k}："
                    "请给每个分片的计量表各自的主题",
                    f"topic {m.mqtt.topic!r} also carries site {first[0]!r} of shard {first[1]}, but site "
                    f"{site.id!r} is in shard {k}: give each shard's meters their own topics"))


def narrow(config: Config, shard: ShardSettings) -> Config:
    """The config of one shard: only the sites and gateways it owns (the rest of the settings unchanged)."""
    if not shard.sharded:
        return config.model_copy(update={"shard": shard})
    plan = plan_shards(config.sites, config.gateways, shard.count)
    if plan.problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in plan.problems))
    sites = tuple(s for s in config.sites if plan.sites[s.id] == shard.index)
    gateways = tuple(g for g in config.gateways if plan.gateways[g.id] == shard.index)
    return config.model_copy(update={"shard": shard, "sites": sites, "gateways": gateways})
