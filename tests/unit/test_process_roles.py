"""What each process role does with a batch of readings: a collector stores it and commits the rule worker's
copy before returning; a rule worker hands it to the engine and stores no readings."""

from __future__ import annotations

from pathlib import Path

from collector.fanout import decode_reading
from gshp.config import parse_config
from gshp.roles import ProcessRole, for_process
from gshp.service import Service
from gshp.shard import ShardSettings
from tests.helpers import readings


def _config(tmp_path: Path) -> str:
    return f"""\
state_dir: {tmp_path / "state"}
influx: {{url: 'http://127.0.0.1:9', api: v1, bucket: x}}
mqtt: {{host: 127.0.0.1, port: 9, client_id: city}}
fanout: {{topic_prefix: gshp/readings}}
sites:
  - id: s1
    name: 向阳荷花广场
    district: 宛城区
    meters:
      - {{id: E1, role: extraction, mqtt: {{topic: dtu/s1/E1}}}}
      - {{id: R1, role: reinjection, mqtt: {{topic: dtu/s1/R1}}}}
"""


def test_a_collector_commits_readings_for_influxdb_and_for_the_rule_worker_and_runs_no_rules(
        tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path), "c.yaml", env={})
    plan = for_process(config, ProcessRole.COLLECTOR, ShardSettings(index=0, count=1))
    service = Service(plan.config, role=ProcessRole.COLLECTOR, fanout_client_id=plan.fanout_client_id)
    batch = list(readings(10))
    service.accept(batch, "test")
    assert service.outbox.depth == 10
    assert service.fanout is not None and service.fanout.depth == 10
    lines = [line for c in service.fanout.peek(100) for line in c.lines]
    topic, _, payload = lines[0].partition(" ")
    assert topic == "gshp/readings/0/s1/E1" and decode_reading(payload.encode()) == batch[0]
    assert service.engine.stats.readings == 0
    assert plan.config.state_dir == tmp_path / "state" / "collector-0"
    service.fanout.close()
    service.outbox.close()
    service.store.close()


def test_a_rule_worker_feeds_the_engine_and_stores_no_readings(tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path), "c.yaml", env={})
    plan = for_process(config, ProcessRole.RULES, ShardSettings(index=0, count=1))
    service = Service(plan.config, role=ProcessRole.RULES)
    service.accept(list(readings(10)), "fanout")
    assert service.outbox.depth == 0 and service.fanout is None
    assert service.engine.stats.readings == 10
    assert service.live.last_seen("s1") is not None
    service.outbox.close()
    service.store.close()
