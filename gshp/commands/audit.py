"""`gshp audit verify|head|list --config FILE`: check and read the audit chain in `<state_dir>/alerts.sqlite`.

`verify` walks every record (sequence, link to the previous record, hash of its content) and compares the
chain with its anchors: the newest one in InfluxDB (`audit_anchor`, written by the service) and any given
with `--anchor HASH@SEQ` (e.g. copied from a daily report). Exit 0 when intact; 1 naming the first broken
record; 2 when the chain cannot be read; 3 when it is intact as far as it goes but InfluxDB could not be
asked for the anchor (use `--offline` to check without it).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from collector.influx.reader import InfluxReader, QueryError
from gshp.anchor import chain_name, latest_anchor
from gshp.commands.configfile import ALWAYS, load_config_or_exit
from gshp.config import Config
from gshp.roles import ProcessRole, RoleError, for_process
from gshp.shard import ShardSettings
from rules.audit import Anchor, parse_anchor, verify

USES = ALWAYS | {"shard"}
"""The config sections `audit head` and `audit list` read (where each process keeps its chain); `audit verify`
reads `influx` besides, for the newest anchor, unless `--offline`."""


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
    _process_arguments(v)
    v.set_defaults(func=run_verify)
    h = cmds.add_parser("head", help="print the chain head as HASH@SEQ")
    h.add_argument("--config", required=True, help="the YAML configuration file")
    _process_arguments(h)
    h.set_defaults(func=run_head)
    ls = cmds.add_parser("list", help="print records as JSON lines (of one incident, alert, site or silence)",
                         description="Prints the newest records, oldest first, one JSON object per line with "
                                     "every field the hash covers, so they can be checked by hand.")
    ls.add_argument("--config", required=True, help="the YAML configuration file")
    ls.add_argument("--subject", help="only records of this subject (an incident or alert id, a site id, "
                                      "silence:<id>)")
    ls.add_argument("--limit", type=int, default=200, help="at most this many records [200]")
    _process_arguments(ls)
    ls.set_defaults(func=run_list)


def _process_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=[r.value for r in ProcessRole], default=ProcessRole.ALL.value,
                   help="in a split deployment, the chain of this process (as given to `gshp run`) [all]")
    p.add_argument("--shard", metavar="K/N", default=None, help="…and of this shard (as given to `gshp run`)")


def _process(args: argparse.Namespace, config: Config) -> tuple[Path, str]:
    """The chain's database and its anchor name for the process `gshp run --role --shard` would run."""
    role = ProcessRole(args.role)
    try:
        shard = ShardSettings.model_validate(args.shard) if args.shard is not None else None
        plan = for_process(config, role, shard)
    except ValidationError as err:
        print(f"--shard {args.shard!r}: {err.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None
    except RoleError as err:
        for text in err.problems:
            print(f"{args.config}: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    return plan.config.state_dir / "alerts.sqlite", chain_name(role, plan.config.shard)


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
    config = load_config_or_exit(args.config, USES if args.offline else USES | {"influx"})
    path, chain = _process(args, config)
    anchors: list[Anchor] = list(args.anchor)
    unreachable: str | None = None
    if not args.offline:
        reader = InfluxReader(config.influx)
        try:
            found = latest_anchor(reader, chain)
        except QueryError as exc:
            unreachable = str(exc)
        else:
            if found is None:
                print(f"no anchor of chain {chain} in InfluxDB yet (the service writes one within minutes of a "
                      "write)")
            else:
                anchor, when = found
                anchors.append(anchor)
                print(f"anchor of chain {chain} from InfluxDB: {anchor} (written "
                      f"{when.isoformat(timespec='seconds')})")
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


def run_list(args: argparse.Namespace) -> int:
    path, _ = _process(args, load_config_or_exit(args.config, USES))
    where, params = ("WHERE subject = ?", [args.subject]) if args.subject is not None else ("", [])
    try:
        db = _open(path)
        try:
            rows = db.execute("SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit "
                              f"{where} ORDER BY seq DESC LIMIT ?", [*params, max(args.limit, 0)]).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        print(f"error: cannot read the audit chain in {path}: {exc}", file=sys.stderr)
        return 2
    for seq, at, actor, action, subject, payload, prev_hash, digest in reversed(rows):
        print(json.dumps({"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
                          "payload": json.loads(payload), "prev_hash": prev_hash, "hash": digest},
                         ensure_ascii=False))
    return 0


def run_head(args: argparse.Namespace) -> int:
    path, _ = _process(args, load_config_or_exit(args.config, USES))
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
