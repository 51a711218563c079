"""`gshp audit verify|head --config FILE`: check the audit chain in `<state_dir>/alerts.sqlite`.

`verify` walks every record (sequence, link to the previous record, hash of its content) and compares the
chain with its anchors: the newest one in InfluxDB (`audit_anchor`, written by the service) and any given
with `--anchor HASH@SEQ` (e.g. copied from a daily report). Exit 0 when intact; 1 naming the first broken
record; 2 when the chain cannot be read; 3 when it is intact as far as it goes but InfluxDB could not be
asked for the anchor (use `--offline` to check without it).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from collector.influx.reader import InfluxReader, QueryError
from gshp.anchor import latest_anchor
from gshp.commands.configfile import load_config_or_exit
from rules.audit import Anchor, parse_anchor, verify


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify the tamper-evident audit chain of people's writes",
        description="Every write people make (cases, attachments, maintenance, silences, acknowledgements) is "
                    "a hash-chained record in <state_dir>/alerts.sqlite, anchored daily in InfluxDB and the daily "
                    "report. See docs/cases.md.")
    cmds = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = cmds.add_parser("verify", help="check every record and the anchors; exit 0 when intact",
                        description="Exit 0 when the chain is intact and holds its anchors; 1 naming the first "
                                    "broken record (edited, deleted, reordered, or a tail cut off behind an "
                                    "anchor); 2 when it cannot be read; 3 when InfluxDB could not be asked for "
                                    "the newest anchor.")
    v.add_argument("--config", required=True, help="the YAML configuration file")
    v.add_argument("--anchor", action="append", default=[], type=_anchor, metavar="HASH@SEQ",
                   help="an anchor kept elsewhere (e.g. printed in a daily report); repeat for several")
    v.add_argument("--offline", action="store_true", help="do not read the anchor from InfluxDB")
    v.set_defaults(func=run_verify)
    h = cmds.add_parser("head", help="print the chain head as HASH@SEQ")
    h.add_argument("--config", required=True, help="the YAML configuration file")
    h.set_defaults(func=run_head)


def _anchor(text: str) -> Anchor:
    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _open(path: Path) -> sqlite3.Connection:
    """The alert database, read-only: verifying changes nothing."""
    if not path.exists():
        raise sqlite3.OperationalError(f"{path} does not exist: check state_dir in the config")
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)


def _rows(path: Path) -> list[tuple[Any, ...]]:
    db = _open(path)
    try:
        return list(db.execute("SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit "
                               "ORDER BY seq"))
    finally:
        db.close()


def run_verify(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    path = config.state_dir / "alerts.sqlite"
    anchors: list[Anchor] = list(args.anchor)
    unreachable: str | None = None
    if not args.offline:
        reader = InfluxReader(config.influx)
        try:
            found = latest_anchor(reader, str(config.shard))
        except QueryError as exc:
            unreachable = str(exc)
        else:
            if found is None:
                print("no anchor in InfluxDB yet (the service writes one within minutes of a write)")
            else:
                anchor, when = found
                anchors.append(anchor)
                print(f"anchor from InfluxDB: {anchor} (written {when.isoformat(timespec='seconds')})")
        finally:
            reader.close()
    try:
        rows = _rows(path)
    except sqlite3.Error as exc:
        print(f"error: cannot read the audit chain in {path}: {exc}", file=sys.stderr)
        return 2
    count, broken = verify(rows, anchors)
    if broken is not None:
        print(f"audit chain BROKEN at {broken}", file=sys.stderr)
        print(f"({count} record(s) before it are intact)", file=sys.stderr)
        return 1
    head = f"{rows[-1][7]}@{rows[-1][0]}" if rows else "none (empty chain)"
    print(f"audit chain intact: {count} record(s), head {head}; "
          f"{len(anchors)} anchor(s) held{': ' + ', '.join(map(str, anchors)) if anchors else ''}")
    if unreachable is not None:
        print(f"error: the newest anchor could not be read from InfluxDB ({unreachable}); a cut tail cannot "
              "be ruled out: retry, give --anchor HASH@SEQ from a daily report, or use --offline", file=sys.stderr)
        return 3
    return 0


def run_head(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    path = config.state_dir / "alerts.sqlite"
    try:
        db = _open(path)
        try:
            row = db.execute("SELECT seq, hash, at FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        print(f"error: cannot read the audit chain in {path}: {exc}", file=sys.stderr)
        return 2
    if row is None:
        print("the audit chain is empty", file=sys.stderr)
        return 0
    print(f"{row[1]}@{row[0]}  ({row[2]})")
    return 0
