"""The one exception of the evidence package."""

from __future__ import annotations

__all__ = ["EvidenceError"]


class EvidenceError(Exception):
    """A package cannot be built or does not verify; `file` names the member at fault, if one is."""

    def __init__(self, file: str | None, message: str) -> None:
        super().__init__(f"{file}: {message}" if file else message)
        self.file = file
