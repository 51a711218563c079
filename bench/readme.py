"""Keeping the README's performance table: the lines between two marker comments are the table."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["END", "START", "replace_table", "splice_rows", "table_of", "update_readme"]

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


def table_of(text: str) -> str:
    """The table between the START and END markers of `text`."""
    replace_table(text, "")  # the same checks
    return text[text.index(START) + len(START):text.index(END)].strip("\n")


def splice_rows(table: str, new: str, prefixes: tuple[str, ...]) -> str:
    """`table` (Markdown) with its rows whose first cell starts with one of `prefixes` replaced by the body
    rows of `new`, where the first of them stood (at the end when none did); other rows stay as they are."""
    lines = table.splitlines()
    head, body = lines[:2], lines[2:]
    fresh = new.splitlines()[2:]
    owned = [i for i, line in enumerate(body) if line.removeprefix("| ").startswith(prefixes)]
    at = owned[0] if owned else len(body)
    kept = [line for i, line in enumerate(body) if i not in set(owned)]
    at -= sum(1 for i in owned if i < at)
    return "\n".join(head + kept[:at] + fresh + kept[at:])


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
