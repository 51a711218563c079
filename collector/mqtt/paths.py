"""Field paths into decoded JSON: ``values.rate``, ``data.0.flow``, ``$.time`` (from the document root).

A path is compiled once into a tuple of steps; a step that is all digits indexes a list. A step may be
``{key}``-templated (``data.{key}_flow``): the meter's key is substituted before lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "Path", "compile_path"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""What `Path.get` returns when any step is absent."""


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    steps: tuple[str, ...]
    from_root: bool
    templated: bool
    name: str | None = None  # the key when the path is one plain step into the record: the fast case

    def get(self, record: Any, root: Any, key: str | None = None) -> Any:
        name = self.name
        if name is not None and type(record) is dict:
            return record.get(name, MISSING)
        node = root if self.from_root else record
        templated = self.templated and key is not None
        for step in self.steps:
            if templated:
                assert key is not None
                step = step.replace("{key}", key)
            if isinstance(node, dict):
                node = node.get(step, MISSING)
            elif isinstance(node, list) and step.isdigit():
                i = int(step)
                node = node[i] if i < len(node) else MISSING
            else:
                return MISSING
            if node is MISSING:
                return MISSING
        return node

    def put(self, record: dict[str, Any], root: dict[str, Any], value: Any, key: str | None = None) -> None:
        """Set a value, creating objects on the way (the simulator's encoder; no list indexes)."""
        node = root if self.from_root else record
        for i, step in enumerate(self.steps):
            if self.templated and key is not None:
                step = step.replace("{key}", key)
            if i == len(self.steps) - 1:
                node[step] = value
            else:
                node = node.setdefault(step, {})

    def __str__(self) -> str:
        return self.text


def compile_path(text: str) -> Path:
    """``a.b.c`` → steps; ``$`` / ``$.a`` start at the document root; ``""`` is the record itself."""
    from_root = text == "$" or text.startswith("$.")
    body = text[2:] if text.startswith("$.") else ("" if text == "$" else text)
    steps = tuple(body.split(".")) if body else ()
    if any(not s for s in steps):
        raise ValueError(f"path {text!r} has an empty step (two dots, or a leading/trailing dot)")
    templated = any("{key}" in s for s in steps)
    plain = len(steps) == 1 and not from_root and not templated and not steps[0].isdigit()
    return Path(text, steps, from_root, templated, steps[0] if plain else None)
