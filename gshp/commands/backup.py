"""`gshp backup --config FILE --to DIR` and `gshp restore --config FILE --from DIR`: the state directory
copied online with a manifest of hashes, and the InfluxDB backup command run or printed."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gshp.backup import BackupError, backup, influx_commands, restore, write_manifest
from gshp.commands.configfile import ALWAYS, load_config_or_exit

USES = ALWAYS | {"influx"}
"""The config sections this command reads."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "backup", help="copy every state store online, with a manifest of hashes",
        description="Copies every store in state_dir (alerts, cases and audit chain, notification queue, "
                    "outbox, dead letters, keys, attachments) while the service runs, using SQLite's online "
                    "backup so each copy is consistent, checks each copy's integrity and writes "
                    "DIR/manifest.json with every file's SHA-256. InfluxDB is backed up with its own tool: "
                    "with --influx-rpc (1.x) the command is run into DIR/influx, otherwise it is printed.")
    p.add_argument("--config", required=True, help="the YAML configuration file")
    p.add_argument("--to", required=True, metavar="DIR", help="a new or empty folder")
    p.add_argument("--influx-rpc", metavar="HOST:PORT",
                   help="InfluxDB 1.x RPC address (its bind-address, 127.0.0.1:8088 by default) to run "
                        "`influxd backup -portable` against")
    p.set_defaults(func=run_backup)
    r: argparse.ArgumentParser = sub.add_parser(
        "restore", help="put a backup made by `gshp backup` back into state_dir",
        description="Checks every file of the backup against its manifest first, refuses while a gshp "
                    "process holds state_dir, moves what state_dir holds aside (with --force) and copies the "
                    "backup in. Start the service afterwards; restore InfluxDB with the printed command.")
    r.add_argument("--config", required=True, help="the YAML configuration file")
    r.add_argument("--from", dest="source", required=True, metavar="DIR", help="a folder made by `gshp backup`")
    r.add_argument("--force", action="store_true", help="move a non-empty state_dir aside instead of refusing")
    r.set_defaults(func=run_restore)


def _plain_url(url: str) -> str:
    """The URL without user and password, for a command line that is printed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_backup(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, USES)
    dest = Path(args.to)
    try:
        files = backup(config.state_dir, dest, progress=lambda what: print(f"  {what}", file=sys.stderr))
    except BackupError as exc:
        print(f"gshp backup: {exc}", file=sys.stderr)
        return 2
    influx = config.influx
    commands = influx_commands(influx.api.value, _plain_url(influx.url), influx.bucket, influx.org,
                               dest / "influx", args.influx_rpc)
    ran: int | None = None
    if args.influx_rpc and influx.api.value == "v1":
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        cmd = shlex.split(commands["backup"])
        cmd[0] = binary
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
        ran = done.returncode
        if ran != 0:
            print(f"gshp backup: `{commands['backup']}` failed ({ran}): {done.stderr.strip()[-500:]}",
                  file=sys.stderr)
    write_manifest(dest, files, config.state_dir, {**commands, "exit_status": ran})
    total = sum(f.bytes for f in files)
    print(f"backed up {len(files)} files ({total} B) of {config.state_dir} into {dest}")
    if ran is None:
        print(f"InfluxDB: run `{commands['backup']}` (restore: `{commands['restore']}`)")
    return 0 if ran in (None, 0) else 1


def run_restore(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, USES)
    source = Path(args.source)
    try:
        aside = restore(source, config.state_dir, force=args.force,
                        progress=lambda what: print(f"  {what}", file=sys.stderr))
    except BackupError as exc:
        print(f"gshp restore: {exc}", file=sys.stderr)
        return 2
    print(f"restored {source} into {config.state_dir}" + (f"; what was there is in {aside}" if aside else ""))
    return 0
