"""What of an invalid config file can still be checked.

When the file fails validation, the checks that span sections (a meter naming an unknown gateway, a
duplicate id, rule overrides, the collector's planning) still have to run, so that one run of
`gshp check-config` shows every problem. `salvage` builds a `Config` of the valid parts: a setting that
fails takes its default, a required one that fails keeps its text (ids are compared, never used) or
drops its list item. It records every replaced path, and how list indexes moved, so that problems found
in the salvaged config are reported at the file's own paths — and left out where they would only repeat,
or follow from, a value that was replaced.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

__all__ = ["Salvage", "salvage"]

Path_ = tuple[str | int, ...]

M = TypeVar("M", bound=BaseModel)

_FAIL = object()


@dataclass
class Salvage:
    replaced: set[Path_] = field(default_factory=set)
    kept: dict[Path_, list[int]] = field(default_factory=dict)  # list path → original index of each kept item

    def original(self, path: Path_) -> Path_:
        """A path in the salvaged config → the same node's path in the file."""
        out: list[str | int] = []
        for p in path:
            kept = self.kept.get(tuple(out))
            if isinstance(p, int) and kept is not None and p < len(kept):
                p = kept[p]
            out.append(p)
        return tuple(out)

    def touches(self, path: Path_) -> bool:
        """Whether a problem at `path` (of the file) is about a replaced value, or a node holding one."""
        return any(path[:len(r)] == r or r[:len(path)] == path for r in self.replaced)

    def model(self, cls: type[BaseModel], raw: Any, path: Path_) -> BaseModel | None:
        try:
            return cls.model_validate(raw)
        except ValidationError:
            pass
        if not isinstance(raw, dict):
            self.replaced.add(path)
            return None
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            key = info.alias if info.alias is not None and info.alias in raw else name
            if key not in raw:
                if info.is_required():
                    self.replaced.add(path)
                    return None
                continue
            value = self._value(info.rebuild_annotation(), info.annotation, raw[key], (*path, key))
            if value is _FAIL:
                self.replaced.add((*path, key))
                if not info.is_required():
                    continue
                if not (isinstance(raw[key], str) and _text(info.annotation)):
                    self.replaced.add(path)
                    return None
                value = raw[key]
            values[name] = value
        return cls.model_construct(**values)

    def _value(self, annotated: Any, annotation: Any, raw: Any, path: Path_) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            got = self.model(annotation, raw, path)
            return _FAIL if got is None else got
        try:
            return TypeAdapter(annotated).validate_python(raw)
        except ValidationError:
            pass
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            member = _tagged_member(args, raw)
            return _FAIL if member is None else self._value(member, member, raw, path)
        if origin in (Union, types.UnionType) and type(None) in args:
            inner = [a for a in args if a is not type(None)]
            if raw is None or len(inner) != 1:
                return _FAIL
            return self._value(inner[0], inner[0], raw, path)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis and isinstance(raw, list):
            items, kept = [], []
            for i, item in enumerate(raw):
                got = self._value(args[0], args[0], item, (*path, i))
                if got is _FAIL:
                    self.replaced.add((*path, i))
                    continue
                items.append(got)
                kept.append(i)
            if len(kept) != len(raw):
                self.kept[path] = kept
            return tuple(items)
        return _FAIL


def _text(annotation: Any) -> bool:
    """Whether a setting holds one piece of text (an id, a name, a choice), which a check may compare."""
    if get_origin(annotation) is Annotated:
        return _text(get_args(annotation)[0])
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, str)


def _tagged_member(args: tuple[Any, ...], raw: Any) -> type[BaseModel] | None:
    """The member of a discriminated union (``Annotated[A | B, Field(discriminator=…)]``) `raw` selects."""
    tag = next((m.discriminator for m in args[1:] if isinstance(m, FieldInfo)), None)
    if not isinstance(tag, str) or not isinstance(raw, dict):
        return None
    for member in get_args(args[0]):
        if (isinstance(member, type) and issubclass(member, BaseModel) and tag in member.model_fields
                and raw.get(tag) in get_args(member.model_fields[tag].annotation)):
            return member
    return None


def salvage(cls: type[M], data: dict[str, Any]) -> tuple[M | None, Salvage]:
    """The valid parts of `data` as an unvalidated `cls` (None when a required setting is unusable), and
    what had to be replaced."""
    s = Salvage()
    return cast(M | None, s.model(cls, data, ())), s
