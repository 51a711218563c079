"""`gshp evidence export|verify`: write an incident's signed evidence package; check one.

`verify` exits 0 when the package is intact, 1 naming the member at fault when any byte of it changed, a
member was added or removed, or the manifest's signature fails (or is not by the key given with --key),
and 2 when the files cannot be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gshp.evidence import EvidenceError, PublicKey, verify_package

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evidence", help="export an incident's signed evidence package, or verify one",
        description="Evidence packages are zips with a manifest of SHA-256 hashes signed by the service's "
                    "Ed25519 key (docs/evidence.md).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = actions.add_parser("verify", help="check a package: exit 0 intact, 1 naming what was altered",
                           description="Checks the manifest's signature and every file's SHA-256. Without --key "
                                       "the key named in the package is used: that proves the package is "
                                       "unchanged since it was signed, not who signed it.")
    v.add_argument("package", help="the .zip")
    v.add_argument("--key", default=None, help="the service's public key (PEM, from GET /api/evidence/key)")
    v.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    try:
        data = Path(args.package).read_bytes()
        key = PublicKey.from_pem(Path(args.key).read_bytes()) if args.key else None
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except EvidenceError as err:
        print(f"{args.key}: {err}", file=sys.stderr)
        return 2
    try:
        ok = verify_package(data, key)
    except EvidenceError as err:
        print(f"NOT INTACT 未通过校验: {args.package}: {err}", file=sys.stderr)
        return 1
    print(f"intact 校验通过: {args.package}: {len(ok.files)} files ({', '.join(ok.files)}), "
          f"signed {ok.manifest.get('created_at')} by {ok.fingerprint}")
    if not ok.key_given:
        print("note: checked against the key inside the package; pass --key with the service's public key to "
              "prove who signed it", file=sys.stderr)
    return 0
