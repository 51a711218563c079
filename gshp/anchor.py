"""Anchoring the audit chain's head outside the state directory: InfluxDB measurement `audit_anchor`.

The service puts the head (`seq`, `hash`, tag `chain`: the process's role and shard, e.g. `all-0`, since
each process keeps its own chain in its own state directory) into the outbox whenever it moved since the last
anchor (checked every `ANCHOR_CHECK`) and at least once a day, so the anchor reaches InfluxDB as durably as
a reading does. `gshp audit verify` reads the newest anchor back: a chain that lost its tail (or was
rewritten) no longer holds the anchored record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from collector.influx.lineproto import format_line, to_ms
from collector.influx.reader import quote_ident, quote_literal
from gshp.roles import ProcessRole
from gshp.shard import ShardSettings
from rules.audit import Anchor, AuditChain

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ANCHOR_CHECK", "MEASUREMENT", "AnchorJob", "anchor_line", "chain_name", "latest_anchor"]

MEASUREMENT = "audit_anchor"
ANCHOR_CHECK = timedelta(minutes=10)
ANCHOR_AT_LEAST = timedelta(days=1)

log = logging.getLogger(__name__)


class Queryable(Protocol):
    def query(self, q: str) -> pd.DataFrame: ...


def chain_name(role: ProcessRole, shard: ShardSettings) -> str:
    """Which process's chain an anchor belongs to: `all-0` for a single `gshp run`, `rules-2` for the rule
    worker of shard 2 (the name of its state folder in a split deployment)."""
    return f"{role.value}-{shard.index}"


def anchor_line(head: Anchor, chain: str, at: datetime) -> str:
    return format_line(MEASUREMENT, {"chain": chain}, {"seq": head.seq, "hash": head.hash}, to_ms(at))


def latest_anchor(reader: Queryable, chain: str) -> tuple[Anchor, datetime] | None:
    """The anchor with the highest `seq` written for this chain, and when; None when there is none yet.
    Raises `QueryError` when InfluxDB cannot be read."""
    df = reader.query(f"SELECT max(seq) AS seq, hash FROM {MEASUREMENT} "
                      f"WHERE {quote_ident('chain')} = {quote_literal(chain)}")
    if df.empty or "seq" not in df or "hash" not in df:
        return None
    row = df.iloc[0]
    return Anchor(int(row["seq"]), str(row["hash"])), row["time"].to_pydatetime()


class AnchorJob:
    """Puts the chain head into the outbox when it changed, and at least daily (`tick` at each check)."""

    def __init__(self, chain: AuditChain, put: Callable[[Sequence[str]], object], name: str) -> None:
        self.chain = chain
        self.put = put
        self.name = name
        self.last: Anchor | None = None
        self.last_at: datetime | None = None

    def tick(self, now: datetime) -> Anchor | None:
        """The anchor written now, or None when nothing was due (an empty chain has no head)."""
        head = self.chain.head()
        if head is None:
            return None
        if head == self.last and self.last_at is not None and now - self.last_at < ANCHOR_AT_LEAST:
            return None
        self.put([anchor_line(head, self.name, now)])
        self.last, self.last_at = head, now
        log.info("audit chain head %s anchored", head)
        return head
