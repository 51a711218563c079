"""An evidence package: a zip of named files and `manifest.json`, which lists every file with its SHA-256 and
size and is signed (Ed25519) by the service's key.

The signature covers the manifest's canonical JSON without its `signature` field (keys sorted, no spaces,
UTF-8): change any byte of any file and its hash no longer matches; change the manifest and the signature
no longer does. `verify_package` names the file at fault.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import mmap
import shutil
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from gshp.evidence.errors import EvidenceError
from gshp.evidence.keys import PublicKey, ServiceKey

__all__ = ["FORMAT", "MANIFEST", "Verified", "canonical", "verify_package", "write_package"]

FORMAT = "gshp-evidence/1"
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 1024 * 1024 * 1024
"""A member larger than this is refused: the zip headers written and checked here have no 64-bit sizes."""
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024


LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
"""A zip member's local header: signature, version needed and a reserved byte, flags, method, DOS time and
date, CRC, sizes, name and extra lengths (PKWARE APPNOTE 4.3.7)."""
CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
"""A zip directory entry (APPNOTE 4.3.12): as the local header, with the version made by (2.0, Unix), comment
length, disk, attributes and the local header's offset."""
END_RECORD = struct.Struct("<4s4H2LH")
"""The end of central directory record (APPNOTE 4.3.16), without a comment."""


def _stamp(created_at: datetime) -> tuple[int, int, int, int, int, int]:
    """The DOS date and time every member carries (2-second resolution)."""
    y, mo, d, h, mi, sec = created_at.timetuple()[:6]
    return max((y, mo, d, h, mi, sec - sec % 2), (1980, 1, 1, 0, 0, 0))


def canonical(value: Mapping[str, Any]) -> bytes:
    """The bytes a manifest's signature covers."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _digest(body: bytes | Path) -> tuple[str, int]:
    """SHA-256 and size of a member, read in chunks when it is a file."""
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest(), len(body)
    h, size = hashlib.sha256(), 0
    with body.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def write_package(out: IO[bytes], files: Mapping[str, bytes | Path], key: ServiceKey, created_at: datetime,
                  about: Mapping[str, Any] | None = None) -> None:
    """Write the zip to `out` (seekable): `files` in the given order — bytes, or a file copied in chunks, so a
    package larger than memory streams through — then the signed manifest. `about` describes the package
    (e.g. the incident id) and is signed with it."""
    for name in files:
        if name == MANIFEST or not name or "/" in name or "\\" in name or name.startswith("."):
            raise EvidenceError(name, "not a plain file name for a package member")
    digests = {name: _digest(body) for name, body in files.items()}
    for name, (_, size) in digests.items():
        if size > MAX_MEMBER_BYTES:
            raise EvidenceError(name, f"larger than {MAX_MEMBER_BYTES} bytes: too large for a package")
    unsigned = {
        "format": FORMAT, "created_at": created_at.isoformat(timespec="seconds"), "about": dict(about or {}),
        "files": [{"name": n, "sha256": d, "bytes": size} for n, (d, size) in digests.items()],
        "key": {"algorithm": "ed25519", "public_key": base64.b64encode(key.public.raw).decode(),
                "fingerprint": key.public.fingerprint},
    }
    manifest = {**unsigned, "signature": base64.b64encode(key.sign(canonical(unsigned))).decode()}
    stamp = _stamp(created_at)
    members: list[tuple[str, bytes | Path]] = [
        *files.items(), (MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode())]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, body in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED  # stored: every byte of a member is its content, checked
            info.external_attr = 0o644 << 16
            if isinstance(body, bytes):
                z.writestr(info, body)
                continue
            info.file_size = digests[name][1]
            with body.open("rb") as src, z.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, CHUNK)


@dataclass(frozen=True)
class Verified:
    """An intact package: its files, its manifest, and whether the signing key was the one given."""

    files: tuple[str, ...]
    manifest: Mapping[str, Any]
    fingerprint: str
    key_given: bool


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, int]:
    """SHA-256 and size of a member's content, read in chunks; a CRC or format error names the member."""
    h, size = hashlib.sha256(), 0
    try:
        with z.open(info) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise EvidenceError(info.filename, f"altered or damaged in the archive ({exc})") from None
    return h.hexdigest(), size


def _manifest_of(z: zipfile.ZipFile) -> dict[str, Any]:
    info = z.getinfo(MANIFEST)
    if info.file_size > MAX_MANIFEST_BYTES:
        raise EvidenceError(MANIFEST, f"larger than {MAX_MANIFEST_BYTES} bytes: not a manifest")
    try:
        body = z.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise EvidenceError(MANIFEST, f"altered or damaged in the archive ({exc})") from None
    return _manifest(body)


def verify_package(source: bytes | Path, key: PublicKey | None = None) -> Verified:
    """Check a package (its bytes, or a file, read in place): the manifest's signature (by `key`, else by the
    key the manifest names, which proves integrity but not origin), the zip's own structure, then every
    member against its hash; no member missing, none unlisted."""
    if isinstance(source, bytes):
        return _verify(source, io.BytesIO(source), key)
    try:
        with source.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _verify(data, f, key)
    except ValueError as exc:  # an empty file cannot be mapped
        raise EvidenceError(None, f"not a readable zip archive: {exc}") from None


def _verify(data: bytes | mmap.mmap, stream: IO[bytes], key: PublicKey | None) -> Verified:
    """`data`: the archive's bytes, for its structure; `stream`: the same, read by the zip reader."""
    try:
        z = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise EvidenceError(None, f"not a readable zip archive: {exc}") from None
    with z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        for name in names:
            if names.count(name) > 1:
                raise EvidenceError(name, "appears twice in the archive")
        if MANIFEST not in names:
            raise EvidenceError(MANIFEST, "missing: this is not an evidence package")
        manifest = _manifest_of(z)
        signer = PublicKey.from_raw_b64(str(manifest["key"].get("public_key", "")))
        if key is not None and key.raw != signer.raw:
            raise EvidenceError(MANIFEST, f"signed by another key ({signer.fingerprint}), not by the one given "
                                          f"({key.fingerprint})")
        unsigned = {k: v for k, v in manifest.items() if k != "signature"}
        try:
            signature = base64.b64decode(str(manifest.get("signature", "")), validate=True)
        except ValueError:
            signature = b""
        if not signer.verifies(signature, canonical(unsigned)):
            raise EvidenceError(MANIFEST, "altered: its signature does not match its content")
        listed = {str(f["name"]): f for f in manifest["files"]}
        for name in names:
            if name != MANIFEST and name not in listed:
                raise EvidenceError(name, "not listed in the signed manifest: added after signing")
        for name in listed:
            if name not in names:
                raise EvidenceError(name, "listed in the manifest but missing from the archive")
        _check_structure(data, z, _created_at(manifest))
        for name, entry in listed.items():
            if _member(z, z.getinfo(name)) != (entry.get("sha256"), entry.get("bytes")):
                raise EvidenceError(name, "altered: its SHA-256 differs from the signed manifest's")
    return Verified(tuple(listed), manifest, signer.fingerprint, key is not None)


def _created_at(manifest: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(manifest.get("created_at")))
    except ValueError:
        raise EvidenceError(MANIFEST, "altered: created_at is not a time") from None


def _check_structure(data: bytes | mmap.mmap, z: zipfile.ZipFile, created_at: datetime) -> None:
    """Every byte of the archive outside the members' contents is what `build_package` writes: each member's
    local header and directory entry are rebuilt from its name, CRC and size and the signed time and compared
    byte for byte, members follow one another with nothing between, and the end record closes the file. The
    contents themselves are checked by CRC and SHA-256 after."""
    stamp = _stamp(created_at)
    dos_time = (stamp[3] << 11) | (stamp[4] << 5) | (stamp[5] // 2)
    dos_date = ((stamp[0] - 1980) << 9) | (stamp[1] << 5) | stamp[2]
    offset, directory = 0, []
    for info in z.infolist():
        name = info.filename
        encoded = name.encode("utf-8")
        flags = 0 if name.isascii() else 0x800
        fields = (20, 0, flags, zipfile.ZIP_STORED, dos_time, dos_date, info.CRC, info.file_size, info.file_size,
                  len(encoded))
        local = LOCAL_HEADER.pack(b"PK\x03\x04", *fields, 0) + encoded
        if data[offset:offset + len(local)] != local:
            raise EvidenceError(name, "altered: its zip header differs from what was signed")
        entry = CENTRAL_ENTRY.pack(b"PK\x01\x02", 20, 3, *fields, 0, 0, 0, 0, 0o644 << 16, offset) + encoded
        directory.append((name, entry))
        offset += len(local) + info.file_size
    at = offset
    for name, entry in directory:
        if data[at:at + len(entry)] != entry:
            raise EvidenceError(name, "altered: its entry in the zip directory differs from what was signed")
        at += len(entry)
    end = END_RECORD.pack(b"PK\x05\x06", 0, 0, len(directory), len(directory), at - offset, offset, 0)
    if data[at:] != end:
        raise EvidenceError(None, "altered: the zip archive's end record was changed or bytes were added")


def _manifest(body: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EvidenceError(MANIFEST, f"altered: not JSON any more ({exc})") from None
    if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("key"), dict)
            or not isinstance(manifest.get("files"), list)
            or not all(isinstance(f, dict) and "name" in f for f in manifest["files"])):
        raise EvidenceError(MANIFEST, f"altered or not a {FORMAT} manifest")
    return manifest
