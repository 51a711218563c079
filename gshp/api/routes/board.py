"""The live board: its page, its static files, and the links sent to enforcement."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

STATIC = Path(__file__).parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def board() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/sites/{site_id}")
def board_site(site_id: str) -> Response:
    # links sent to enforcement point here; the board itself routes with #/sites/<id>
    return Response(status_code=307, headers={"Location": f"/#/sites/{quote(site_id, safe='')}"})
