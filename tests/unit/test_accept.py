"""`Service.accept`, the sink of every source: a refused reading is counted and dead-lettered before the
source is acknowledged and reaches no consumer; a repeat still reaches the consumers, so a failure after the
commit loses nothing downstream when the source re-sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.fanout import decode_reading
from collector.model import Reading
from collector.outbox import OutboxError
from gshp.config import parse_config
from gshp.roles import ProcessRole, for_process
from gshp.service import Service
from gshp.shard import ShardSettings
from tests.helpers import readings
from tests.unit.test_process_roles import _config


def _close(service: Service) -> None:
    if service.fanout is not None:
        service.fanout.close()
    service.seen.close()
    service.deadletters.close()
    service.outbox.close()
    service.store.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = Service(parse_config(_config(tmp_path), "c.yaml", env={}))
    yield s
    _close(s)


def test_a_conflicting_reading_is_dead_lettered_and_reaches_no_consumer(service: Service) -> None:
    batch = list(readings(4))
    service.accept(batch, "modbus")
    forged = Reading("s1", "E1", batch[0].role, batch[0].ts, 0.0, 1.0)
    service.accept([forged, *batch], "modbus")
    assert service.outbox.depth == 4
    assert service.engine.stats.readings == 8, "the repeats reached the engine (as duplicates), the forgery not"
    assert service.engine.stats.duplicates + service.engine.stats.late == 4
    assert service.live.latest("s1")["E1"] == batch[2]
    [letter] = service.deadletters.list()
    assert (letter.source, letter.topic, letter.reason) == ("modbus", "s1/E1", "conflict")
    assert json.loads(letter.payload)["total_m3"] == 1.0 and "never rewritten" in letter.detail


def test_a_batch_re_sent_after_the_fan_out_failed_reaches_the_rule_worker(tmp_path: Path) -> None:
    plan = for_process(parse_config(_config(tmp_path), "c.yaml", env={}), ProcessRole.COLLECTOR,
                       ShardSettings(index=0, count=1))
    service = Service(plan.config, role=ProcessRole.COLLECTOR, fanout_client_id=plan.fanout_client_id)
    assert service.fanout is not None
    fanout_put = service.fanout.put

    def broken(lines: object) -> int:
        raise OutboxError("disk full")

    batch = list(readings(10))
    service.fanout.put = broken  # type: ignore[method-assign]
    with pytest.raises(OutboxError):
        service.accept(batch, "mqtt")  # committed for InfluxDB; the source is not acknowledged
    service.fanout.put = fanout_put  # type: ignore[method-assign]
    service.accept(batch, "mqtt")  # the broker redelivers
    assert service.outbox.depth == 10
    sent = [decode_reading(line.partition(" ")[2].encode()) for c in service.fanout.peek(100) for line in c.lines]
    assert sent == batch
    _close(service)
