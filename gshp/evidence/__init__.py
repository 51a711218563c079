"""Evidence packages: a signed zip of everything behind an incident, verifiable by anyone with the service's
public key (`gshp evidence verify`, docs/evidence.md)."""

from gshp.evidence.errors import EvidenceError
from gshp.evidence.keys import KEY_FILE, PublicKey, ServiceKey
from gshp.evidence.package import Verified, verify_package, write_package

__all__ = ["KEY_FILE", "EvidenceError", "PublicKey", "ServiceKey", "Verified", "verify_package", "write_package"]
