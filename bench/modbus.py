"""Modbus collection benchmark (loopback only, stops by itself).

1. Throughput: meters/s the collector polls from simulated TUF-2000M units (decode, Reading, sink)
   against a bare pymodbus loop reading the same registers over the same connections, same run; the
   ratio is the collector's efficiency (goal ≥ 0.6).
2. Scale: 1000 meters (125 gateways × 8 units) at a 1 s interval from one process under APScheduler,
   reporting overruns, skipped cycles and readings/s.

The simulators run in a child process (this script with --serve) so both sides get their own core.

    python bench/modbus.py [--seconds 3] [--rounds 3] [--gateways 4] [--scale-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pymodbus.client import AsyncModbusTcpClient

from bench.table import Row
from collector.modbus import PROFILES, Gateway, ModbusCollector, plan_collection
from collector.model import Reading, Site
from simulators.modbus import ModbusSimServer, ModelClock, Scenario, image_size, range_units

UNITS = 8


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


async def serve(ports: list[int], seconds: float) -> None:
    profile = PROFILES.get("tuf2000m")
    clock = ModelClock(1.0)
    # the meters refresh their registers twice a second (like a real display), so the simulator
    # process is not what limits the collector
    servers = [ModbusSimServer(range_units(profile, list(range(1, UNITS + 1)), Scenario(), clock,
                                           refresh_s=0.5),
                               size=image_size(profile), port=p) for p in ports]
    for s in servers:
        await s.start()
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for s in servers:
        await s.stop()


def start_sims(ports: list[int], seconds: float) -> subprocess.Popen[str]:
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-m", "bench.modbus", "--serve", ",".join(map(str, ports)),
                             "--serve-seconds", str(seconds)], stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("simulators did not start")
    return proc


def config(ports: list[int], interval: str = "1s", jitter: str = "0s") -> tuple[list[Gateway], list[Site]]:
    gateways, sites = [], []
    for i, port in enumerate(ports):
        gid = f"gw{i}"
        gateways.append(Gateway.model_validate({"id": gid, "host": "127.0.0.1", "port": port,
                                                "interval": interval, "timeout": "500ms", "jitter": jitter}))
        meters = [{"id": f"M{u}", "role": "extraction" if u % 2 else "reinjection",
                   "modbus": {"gateway": gid, "unit": u, "profile": "tuf2000m"}} for u in range(1, UNITS + 1)]
        sites.append(Site.model_validate({"id": f"site{i}", "name": f"site {i}", "district": "bench",
                                          "meters": meters}))
    return gateways, sites


async def bare_loop(ports: list[int], seconds: float) -> float:
    """meters/s: one client per gateway, each reading the same 118 registers per unit in turn."""
    count = 0

    async def one(port: int) -> None:
        nonlocal count
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
        await client.connect()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for u in range(1, UNITS + 1):
                r = await client.read_holding_registers(0, count=118, device_id=u)
                if not r.isError():
                    count += 1
        client.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(p) for p in ports))
    return count / (time.perf_counter() - t0)


async def collector_loop(ports: list[int], seconds: float) -> float:
    """meters/s through the collector: request, decode, Reading, sink."""
    gateways, sites = config(ports)
    readings = 0

    def sink(batch: list[Reading]) -> None:
        nonlocal readings
        readings += len(batch)

    collector = ModbusCollector(plan_collection(gateways, sites), sink)
    await collector.poll_once()  # connect and read identity once, like a running service
    readings = 0

    async def one(gid: str) -> None:
        poller = collector.pollers[gid]
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await poller.cycle()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(g.id) for g in gateways))
    elapsed = time.perf_counter() - t0
    collector.close()
    return readings / elapsed


async def scale(ports: list[int], seconds: float) -> tuple[int, int, int, float, float]:
    gateways, sites = config(ports, interval="1s", jitter="200ms")
    readings = 0

    def sink(batch: list[Reading]) -> None:
        nonlocal readings
        readings += len(batch)

    collector = ModbusCollector(plan_collection(gateways, sites), sink)
    scheduler = AsyncIOScheduler(timezone=UTC)
    collector.schedule(scheduler)
    scheduler.start()
    await asyncio.sleep(2.0)  # warm-up: connections and identity reads
    readings, skipped0, overruns0 = 0, collector.skipped, collector.overruns
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    rate = readings / elapsed
    cpu = (time.process_time() - c0) / elapsed
    await collector.aclose(5)
    scheduler.shutdown(wait=False)
    return collector.plan.meter_count, collector.overruns - overruns0, collector.skipped - skipped0, rate, cpu


def measure(seconds: float = 3.0, gateways: int = 4, rounds: int = 3, scale_seconds: float = 10.0) -> dict[str, float]:
    """Throughput of the collector against a bare pymodbus loop (alternating rounds, medians), then the
    1000-meter scale run."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ports = free_ports(gateways)
    sims = start_sims(ports, 2 * rounds * (seconds + 2) + 10)
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "collector": []}
    try:
        for _ in range(rounds):  # alternate, so background load hits both alike
            for name, fn in (("bare", bare_loop), ("collector", collector_loop)):
                c0 = time.process_time()
                rate = asyncio.run(fn(ports, seconds))
                cpu_us = (time.process_time() - c0) / max(rate * seconds, 1) * 1e6
                results[name].append((rate, cpu_us))
    finally:
        sims.terminate()
        sims.wait(10)
    bare, bare_cpu = (statistics.median(x) for x in zip(*results["bare"], strict=True))
    coll, coll_cpu = (statistics.median(x) for x in zip(*results["collector"], strict=True))
    ports = free_ports(125)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    sims = start_sims(ports, scale_seconds + 15)
    try:
        meters, overruns, skipped, rate, cpu = asyncio.run(scale(ports, scale_seconds))
    finally:
        sims.terminate()
        sims.wait(10)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu = (child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime) / (
        time.perf_counter() - w0)
    return {"bare": bare, "bare_cpu_us": bare_cpu, "collector": coll, "collector_cpu_us": coll_cpu,
            "scale_meters": meters, "scale_overruns": overruns, "scale_skipped": skipped, "scale_rate": rate,
            "scale_cpu": cpu, "sim_cpu": sim_cpu}


def run() -> list[Row]:
    m = measure()
    return [Row(f"Modbus poll: {4 * UNITS} simulated TUF-2000M meters", m["collector"], "meters/s", m["bare"],
                "bare pymodbus loop, same registers", "≥ 0.6×"),
            Row(f"Modbus: {m['scale_meters']:.0f} meters at 1 s interval (overruns: {m['scale_overruns']:.0f})",
                m["scale_rate"], "readings/s", None, "", "no overruns")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput run")
    ap.add_argument("--gateways", type=int, default=4, help="gateways (8 units each) for throughput")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/collector rounds")
    ap.add_argument("--scale-seconds", type=float, default=10.0, help="duration of the 1000-meter run")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--serve-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serve:
        asyncio.run(serve([int(p) for p in args.serve.split(",")], args.serve_seconds))
        return 0
    m = measure(args.seconds, args.gateways, args.rounds, args.scale_seconds)
    print(f"throughput ({args.gateways} gateways x {UNITS} TUF-2000M units, median of {args.rounds} "
          f"alternating {args.seconds:g}s runs; simulators in a child process):")
    print(f"  bare pymodbus loop : {m['bare']:8.0f} meters/s  {m['bare_cpu_us']:6.0f} us CPU/meter")
    print(f"  collector          : {m['collector']:8.0f} meters/s  {m['collector_cpu_us']:6.0f} us CPU/meter")
    print(f"  ratio              : {m['collector'] / m['bare']:8.2f}x  (goal >= 0.6)")
    print(f"scale: {m['scale_meters']:.0f} meters on 125 gateways at 1s interval for {args.scale_seconds:g}s:")
    print(f"  readings/s {m['scale_rate']:.0f}, overruns {m['scale_overruns']:.0f}, skipped cycles "
          f"{m['scale_skipped']:.0f}, collector CPU {m['scale_cpu']:.0%} of one core (simulator process "
          f"{m['sim_cpu']:.0%} over its lifetime)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
