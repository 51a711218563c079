"""The vendored Leaflet: the released files as their checksums say, shipped in the package, and a board page
that names nothing outside the service."""

from __future__ import annotations

import hashlib
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "gshp" / "api" / "static"
LEAFLET = STATIC / "vendor" / "leaflet"


def test_the_vendored_files_are_the_release_and_say_which() -> None:
    notes = (LEAFLET / "VERSION").read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in notes
    assert 'version="1.9.4"' in (LEAFLET / "leaflet.js").read_text(encoding="utf-8")
    for name in ("leaflet.js", "leaflet.css"):
        digest = hashlib.sha256((LEAFLET / name).read_bytes()).hexdigest()
        assert re.search(rf"^{re.escape(name)}\s+sha256 {digest}$", notes, re.M), name
    assert "BSD 2-Clause" in (LEAFLET / "LICENSE").read_text(encoding="utf-8")


def test_package_data_ships_every_static_file() -> None:
    """Each file under gshp/api/static matches a package-data pattern of its (namespace) package, as
    setuptools reads them: patterns of "*" and of the package itself, relative to the package's folder."""
    data: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert len(files) >= 12
    for f in files:
        shipped = False
        for parent in f.relative_to(ROOT).parents:
            if parent == Path("."):
                break
            package = ".".join(parent.parts)
            relative = f.relative_to(ROOT / parent).as_posix()
            patterns = data.get("*", []) + data.get(package, [])
            if any(fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns):
                shipped = True
                break
        assert shipped, f"{f.relative_to(ROOT)} is not in [tool.setuptools.package-data]"


def test_the_board_page_loads_nothing_from_elsewhere() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'(?:src|href)="(?!/static/|#)([^"]*)"', html) == []
    assert '<script src="/static/vendor/leaflet/leaflet.js">' in html
    for name in ("map.js", "map.css", "board.js"):
        assert not re.search(r"https?://", (STATIC / name).read_text(encoding="utf-8")), name
