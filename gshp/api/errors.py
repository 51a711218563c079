"""A refused request's `detail`: Chinese first, then English, in one line (`中文 / English`)."""

from __future__ import annotations

from fastapi import HTTPException

__all__ = ["refused"]


def refused(status: int, zh: str, en: str, headers: dict[str, str] | None = None) -> HTTPException:
    """The exception to raise: `status` with `zh / en` as its detail."""
    return HTTPException(status, f"{zh} / {en}", headers=headers)
