"""Keeping the README's performance table: the lines between two marker comments are the table."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["END", "START", "replace_table", "update_readme"]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def replace_table(text: str, table: str) -> str:
    """`text` with the lines between the START and END markers replaced by `table` (the markers stay)."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"the file needs one line {START} before the table and one line {END} after it")
    start, end = text.index(START), text.index(END)
    if end < start:
        raise ValueError(f"{END} comes before {START}")
    return f"{text[:start]}{START}\n{table.strip(chr(10))}\n{text[end:]}"


def update_readme(path: Path, table: str) -> bool:
    """Replace the table in `path` (written whole, through a temporary file); whether anything changed."""
    text = path.read_text(encoding="utf-8")
    new = replace_table(text, table)
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return True
