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
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gshp.evidence.errors import EvidenceError
from gshp.evidence.keys import PublicKey, ServiceKey

__all__ = ["FORMAT", "MANIFEST", "Verified", "build_package", "canonical", "verify_package"]

FORMAT = "gshp-evidence/1"
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 512 * 1024 * 1024
"""A member larger than this (uncompressed) is refused by `verify_package` (a zip bomb is not evidence)."""


def canonical(value: Mapping[str, Any]) -> bytes:
    """The bytes a manifest's signature covers."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def build_package(files: Mapping[str, bytes], key: ServiceKey, created_at: datetime,
                  about: Mapping[str, Any] | None = None) -> bytes:
    """The zip: `files` in the given order, then the signed manifest. `about` describes the package (e.g. the
    incident id) and is signed with it."""
    for name in files:
        if name == MANIFEST or not name or "/" in name or "\\" in name or name.startswith("."):
            raise EvidenceError(name, "not a plain file name for a package member")
    unsigned = {
        "format": FORMAT, "created_at": created_at.isoformat(timespec="seconds"), "about": dict(about or {}),
        "files": [{"name": n, "sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in files.items()],
        "key": {"algorithm": "ed25519", "public_key": base64.b64encode(key.public.raw).decode(),
                "fingerprint": key.public.fingerprint},
    }
    manifest = {**unsigned, "signature": base64.b64encode(key.sign(canonical(unsigned))).decode()}
    stamp = created_at.timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in [*files.items(), (MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode())]:
            info = zipfile.ZipInfo(name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, body)
    return out.getvalue()


@dataclass(frozen=True)
class Verified:
    """An intact package: its files, its manifest, and whether the signing key was the one given."""

    files: tuple[str, ...]
    manifest: Mapping[str, Any]
    fingerprint: str
    key_given: bool


def _read(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MEMBER_BYTES:
        raise EvidenceError(info.filename, f"larger than {MAX_MEMBER_BYTES} bytes")
    try:
        return z.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise EvidenceError(info.filename, f"altered or damaged in the archive ({exc})") from None


def verify_package(data: bytes, key: PublicKey | None = None) -> Verified:
    """Check a package: the manifest's signature (by `key`, else by the key the manifest names, which proves
    integrity but not origin), then every member against its hash; no member missing, none unlisted."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
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
        manifest = _manifest(_read(z, z.getinfo(MANIFEST)))
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
        for name, entry in listed.items():
            if name not in names:
                raise EvidenceError(name, "listed in the manifest but missing from the archive")
            body = _read(z, z.getinfo(name))
            if len(body) != entry.get("bytes") or hashlib.sha256(body).hexdigest() != entry.get("sha256"):
                raise EvidenceError(name, "altered: its SHA-256 differs from the signed manifest's")
    return Verified(tuple(listed), manifest, signer.fingerprint, key is not None)


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
