"""Consistent online copies of the state directory, and putting one back.

`backup` copies every SQLite store with SQLite's online backup (a consistent snapshot while the service
keeps writing), checks each copy's integrity, copies every other state file (attachments, keys, records),
and writes `manifest.json` with each file's SHA-256 and size. `restore` checks the manifest before it
touches anything, refuses while a service holds the state directory, moves what is there aside, and puts
the copy back. WAL side files (`-wal`, `-shm`) and the process lock are never copied: a store's copy is
whole in its own file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gshp import __version__

__all__ = ["MANIFEST", "BackupError", "BackupFile", "backup", "holder", "influx_commands", "restore", "verify_backup",
           "write_manifest"]

MANIFEST = "manifest.json"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal")
_LOCK = "gshp.lock"

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot be made: says which file and what to do."""


@dataclass(frozen=True, slots=True)
class BackupFile:
    path: str  # relative to the state directory, with '/'
    sha256: str
    bytes: int
    kind: str  # "sqlite" or "file"


def _state_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.endswith(_SKIP_SUFFIXES) \
                and path.name != _LOCK:
            yield path


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _copy_sqlite(src: Path, dst: Path) -> None:
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
        check = target.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        target.close()
        source.close()
    if check != "ok":
        raise BackupError(f"{src}: the copy fails SQLite's integrity check ({check}); the store itself may be "
                          "damaged — stop the service and copy it with `sqlite3 FILE .recover`")


def holder(state_dir: Path) -> int | None:
    """The PID of the process holding `state_dir`'s lock, or None when no process holds it."""
    lock = state_dir / _LOCK
    if not lock.exists():
        return None
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def backup(state_dir: Path, dest: Path, progress: Progress = lambda _: None) -> list[BackupFile]:
    """Copy `state_dir` into the new or empty folder `dest`; returns what the manifest lists."""
    if not state_dir.is_dir():
        raise BackupError(f"{state_dir}: no such state directory (state_dir in the config)")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest}: not empty; back up into a new folder (e.g. one per date)")
    _private_dir(dest)
    files = []
    for src in _state_files(state_dir):
        rel = src.relative_to(state_dir)
        dst = dest / "state" / rel
        _private_dir(dst.parent)
        kind = "sqlite" if _is_sqlite(src) else "file"
        if kind == "sqlite":
            _copy_sqlite(src, dst)
        else:
            shutil.copyfile(src, dst)
        dst.chmod(0o600)
        files.append(BackupFile(rel.as_posix(), _sha256(dst), dst.stat().st_size, kind))
        progress(f"{rel.as_posix()} ({files[-1].bytes} B)")
    return files


def write_manifest(dest: Path, files: list[BackupFile], state_dir: Path, influx: dict[str, object]) -> Path:
    path = dest / MANIFEST
    path.write_text(json.dumps({
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "version": __version__,
        "state_dir": str(state_dir), "influx": influx,
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes, "kind": f.kind} for f in files],
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def verify_backup(source: Path) -> list[BackupFile]:
    """Every file the manifest lists, each checked against its hash; raises naming the first that differs
    or is missing."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
        files = [BackupFile(f["path"], f["sha256"], int(f["bytes"]), f["kind"]) for f in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{source / MANIFEST}: not a backup manifest ({exc})") from None
    for f in files:
        path = source / "state" / f.path
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            raise BackupError(f"{MANIFEST}: {f.path!r} leaves the backup folder")
        if not path.is_file():
            raise BackupError(f"{path}: listed in the manifest but missing")
        if _sha256(path) != f.sha256:
            raise BackupError(f"{path}: changed since the backup (SHA-256 differs from the manifest)")
    return files


def restore(source: Path, state_dir: Path, force: bool = False, progress: Progress = lambda _: None) -> Path | None:
    """Put the backup in `source` back into `state_dir`. What was there is moved aside (returned) when
    `force`; without it a state directory holding files is refused."""
    files = verify_backup(source)
    pid = holder(state_dir) if state_dir.exists() else None
    if pid is not None:
        raise BackupError(f"{state_dir} is in use by a running gshp (PID {pid}): stop it first")
    aside = None
    if state_dir.exists() and any(state_dir.iterdir()):
        if not force:
            raise BackupError(f"{state_dir} holds files: pass --force to move them aside and restore")
        aside = state_dir.with_name(f"{state_dir.name}.before-restore-{datetime.now(UTC):%Y%m%d%H%M%S}")
        state_dir.rename(aside)
    _private_dir(state_dir)
    for f in files:
        dst = state_dir / f.path
        _private_dir(dst.parent)
        shutil.copyfile(source / "state" / f.path, dst)
        dst.chmod(0o600)
        progress(f.path)
    return aside


def influx_commands(api: str, url: str, db: str, org: str | None, into: Path, rpc: str | None) -> dict[str, str]:
    """The InfluxDB backup and restore commands for this deployment (secrets as environment references)."""
    if api == "v1":
        host = rpc or "127.0.0.1:8088"
        return {"backup": f"influxd backup -portable -host {host} -db {db} {into}",
                "restore": f"influxd restore -portable -host {host} -db {db} {into}"}
    return {"backup": f'influx backup {into} --host {url} --org {org} -t "$INFLUX_TOKEN"',
            "restore": f'influx restore {into} --host {url} --org {org} -t "$INFLUX_TOKEN"'}

