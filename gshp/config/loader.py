"""Read the YAML config file, interpolate ``${VAR}`` / ``${VAR:-default}``, validate it into `Config`.

Every problem is collected before anything is raised, so a user fixes a file in one pass. Each problem
carries the line of the offending node, found by walking the YAML node tree alongside the data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gshp.config.errors import ConfigError, Problem
from gshp.config.schema import SECRET_FIELDS, Config, cross_check
from rules.notify.mask import mask_url

__all__ = ["load_config", "parse_config"]

Path_ = tuple[str | int, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


class _Lines:
    """Maps a data path (keys and list indexes) to the 1-based line it was written on."""

    def __init__(self) -> None:
        self.by_path: dict[Path_, int] = {}

    def line(self, path: Path_) -> int | None:
        while True:
            if path in self.by_path:
                return self.by_path[path]
            if not path:
                return None
            path = path[:-1]


def _construct(node: yaml.Node, path: Path_, lines: _Lines, problems: list[Problem], file: str,
               env: Mapping[str, str]) -> Any:
    lines.by_path[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)  # scalar keys only
            if isinstance(key, str | int):
                if key in out:
                    problems.append(Problem(file, key_node.start_mark.line + 1, _fmt((*path, key)),
                                            "appears twice in the same mapping"))
                out[key] = _construct(value_node, (*path, key), lines, problems, file, env)
            else:
                problems.append(Problem(file, key_node.start_mark.line + 1, _fmt(path), "keys must be text"))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines, problems, file, env) for i, v in enumerate(node.value)]
    value = yaml.SafeLoader(" ").construct_object(node)
    if isinstance(value, str) and "$" in value:
        value = _interpolate(value, path, node.start_mark.line + 1, problems, file, env)
    return value


def _interpolate(text: str, path: Path_, line: int, problems: list[Problem], file: str,
                 env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(Problem(file, line, _fmt(path),
                                f"environment variable {name} is not set: export it, "
                                f"or write ${{{name}:-default}}"))
        return ""

    return _VAR.sub(sub, text)


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _shown(path: Path_, value: Any) -> str | None:
    if any(p in SECRET_FIELDS for p in path if isinstance(p, str)):
        return "(hidden)"
    if isinstance(value, dict | list):
        return None
    text = repr(mask_url(value) if isinstance(value, str) and "://" in value else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _lookup(data: Any, path: Path_) -> Any:
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _pydantic_problems(err: ValidationError, data: Any, lines: _Lines, file: str) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        # pydantic puts union-member and validator names into loc; keep the data path only
        path = _data_path(tuple(p for p in e["loc"] if not (isinstance(p, str) and _is_pseudo(p))), data)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "is not a known setting (check the spelling; see deploy/examples/)"
        elif e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            path = (*path, str(ctx.get("discriminator", "type")).strip("'"))
            msg = f"is not one of {ctx.get('expected_tags', 'the known types')}"
        elif e["type"] == "union_tag_not_found":
            path = (*path, str(e.get("ctx", {}).get("discriminator", "type")).strip("'"))
            msg = "is required (it selects which settings apply)"
        problems.append(Problem(file, lines.line(path), _fmt(path), msg,
                                None if e["type"] == "missing" else _shown(path, _lookup(data, path))))
    return problems


def _data_path(loc: Path_, data: Any) -> Path_:
    """Drop what pydantic adds to a location that is not in the data: the tag of a discriminated union
    (``notify[0].webhook.url`` is ``notify[0].url`` in the file)."""
    out: list[str | int] = []
    for p in loc:
        if isinstance(p, str) and isinstance(data, dict) and p not in data and data.get("type") == p:
            continue
        out.append(p)
        data = _lookup(data, (p,))
    return tuple(out)


def _is_pseudo(loc: str) -> bool:
    return loc.startswith(("function-", "tagged-union")) or "[" in loc or loc in {"str", "int", "float"}


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Validate config text; raise `ConfigError` listing every problem."""
    env = os.environ if env is None else env
    problems: list[Problem] = []
    try:
        nodes = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError([Problem(file, mark.line + 1 if mark else None, "",
                                   f"is not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if nodes is None:
        raise ConfigError([Problem(file, None, "", "is empty: see deploy/examples/ for a starting point")])
    lines = _Lines()
    data = _construct(nodes, (), lines, problems, file, env)
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", "must be a mapping of settings (timezone:, sites:, …)")])
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        problems.extend(_pydantic_problems(err, data, lines, file))
    if config is not None:
        for path, message in cross_check(config):
            problems.append(Problem(file, lines.line(path), _fmt(path), message,
                                    _shown(path, _lookup(data, path))))
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems)
    assert config is not None
    return config


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, "", f"cannot be read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(p), None, "", "is not UTF-8 text")]) from None
    return parse_config(text, str(p), env)
