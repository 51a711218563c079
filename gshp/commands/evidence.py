"""`gshp evidence export|verify`: write an incident's signed evidence package; check one.

`verify` exits 0 when the package is intact, 1 naming the member at fault when any byte of it changed, a
member was added or removed, or the manifest's signature fails (or is not by the key given with --key),
and 2 when the files cannot be read."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.influx.reader import InfluxReader, QueryError
from gshp.commands.configfile import load_config_or_exit
from gshp.evidence import KEY_FILE, EvidenceError, PublicKey, ServiceKey, verify_package
from rules.audit import AuditChain
from rules.cases import CaseStore
from rules.store import AlertStore

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evidence", help="export an incident's signed evidence package, or verify one",
        description="Evidence packages are zips with a manifest of SHA-256 hashes signed by the service's "
                    "Ed25519 key (docs/evidence.md).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = actions.add_parser("export", help="write an incident's signed evidence package",
                           description="Reads the incident and its case from state_dir, its readings from InfluxDB, "
                                       "and signs the package with the service's key (made in state_dir if "
                                       "missing).")
    e.add_argument("--config", required=True, help="the YAML configuration file")
    e.add_argument("--incident", required=True, help="the incident id (GET /api/incidents)")
    e.add_argument("--out", required=True, help="the .zip to write")
    e.set_defaults(func=export)
    v = actions.add_parser("verify", help="check a package: exit 0 intact, 1 naming what was altered",
                           description="Checks the manifest's signature and every file's SHA-256. Without --key "
                                       "the key named in the package is used: that proves the package is "
                                       "unchanged since it was signed, not who signed it.")
    v.add_argument("package", help="the .zip")
    v.add_argument("--key", default=None, help="the service's public key (PEM, from GET /api/evidence/key)")
    v.set_defaults(func=verify)


def export(args: argparse.Namespace) -> int:
    from gshp.evidence.incident import export_incident  # pandas: imported by this command only

    config = load_config_or_exit(args.config)  # every section: the package holds the hash of the whole config
    database = config.state_dir / "alerts.sqlite"
    if not database.exists():
        print(f"{args.config}: no alert database at {database}: is state_dir the service's?", file=sys.stderr)
        return 2
    try:
        key = ServiceKey.load_or_create(config.state_dir / KEY_FILE)
    except EvidenceError as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")  # the package appears whole or not at all
    store = AlertStore(database)
    reader = InfluxReader(config.influx)
    try:
        audit = AuditChain(store)
        with tmp.open("wb") as f:
            export_incident(args.incident, f, config=config, store=store, audit=audit,
                            cases=CaseStore(store, audit, config.state_dir / "attachments"), reader=reader, key=key,
                            now=datetime.now(UTC))
        tmp.replace(out)
    except EvidenceError as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    except QueryError as exc:
        print(f"the readings are unavailable: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        tmp.unlink(missing_ok=True)
        reader.close()
        store.close()
    print(f"{out}: evidence package of incident {args.incident} ({out.stat().st_size} bytes), signed by "
          f"{key.public.fingerprint}")
    return 0


def verify(args: argparse.Namespace) -> int:
    try:
        if not Path(args.package).is_file():
            raise FileNotFoundError(2, "no such file", args.package)
        key = PublicKey.from_pem(Path(args.key).read_bytes()) if args.key else None
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except EvidenceError as err:
        print(f"{args.key}: {err}", file=sys.stderr)
        return 2
    try:
        ok = verify_package(Path(args.package), key)
    except EvidenceError as err:
        print(f"NOT INTACT 未通过校验: {args.package}: {err}", file=sys.stderr)
        return 1
    print(f"intact 校验通过: {args.package}: {len(ok.files)} files ({', '.join(ok.files)}), "
          f"signed {ok.manifest.get('created_at')} by {ok.fingerprint}")
    if not ok.key_given:
        print("note: checked against the key inside the package; pass --key with the service's public key to "
              "prove who signed it", file=sys.stderr)
    return 0
