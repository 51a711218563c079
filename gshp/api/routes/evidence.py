"""The public key that checks evidence packages (see docs/evidence.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from gshp.api.deps import EvidenceKey, Viewer

router = APIRouter(tags=["api"])


@router.get("/api/evidence/key", response_class=Response, responses={200: {
    "content": {"application/x-pem-file": {}},
    "description": "the service's Ed25519 public key (PEM); its fingerprint in `X-Key-Fingerprint`"}})
def evidence_key(_: Viewer, key: EvidenceKey) -> Response:
    """The public half of the key that signs every evidence package: give it to whoever checks a package
    (`gshp evidence verify FILE.zip --key KEY.pem`) and compare its fingerprint by another channel."""
    public = key.public
    return Response(public.pem(), media_type="application/x-pem-file", headers={
        "X-Key-Fingerprint": public.fingerprint,
        "Content-Disposition": 'attachment; filename="gshp-evidence-key.pem"'})
