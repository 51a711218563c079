"""The service's Ed25519 signing key for evidence packages: generated on first start in `state_dir`
(`evidence-key.pem`, PKCS#8, mode 0600, never printed); its public half is served at `/api/evidence/key`."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gshp.evidence.errors import EvidenceError

__all__ = ["KEY_FILE", "PublicKey", "ServiceKey"]

KEY_FILE = "evidence-key.pem"


@dataclass(frozen=True)
class PublicKey:
    """The key that checks a package's manifest signature."""

    key: Ed25519PublicKey

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise EvidenceError(None, f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise EvidenceError(None, "not an Ed25519 public key")
        return cls(key)

    @classmethod
    def from_raw_b64(cls, text: str) -> PublicKey:
        try:
            return cls(Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True)))
        except ValueError as exc:
            raise EvidenceError("manifest.json", f"its public_key is not an Ed25519 key: {exc}") from None

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        """`sha256:` and the hex SHA-256 of the raw 32-byte key: what a third party compares by phone."""
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class ServiceKey:
    private: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> ServiceKey:
        """The key at `path`, created (mode 0600, atomically: two starts never make two keys) if missing.
        A key file others may read is refused: anyone who can read it can sign packages."""
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process created the key meanwhile: that one is used
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> ServiceKey:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise EvidenceError(None, f"{path}: the evidence signing key must be readable by its owner only: "
                                      f"chmod 600 {path}")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise EvidenceError(None, f"{path}: not an unencrypted PEM private key ({exc}); move it away to have "
                                      "a new key made (packages signed with the old one need its public key)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceError(None, f"{path}: not an Ed25519 key")
        return cls(key)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)
