"""Read the YAML config file, interpolate ``${VAR}`` / ``${VAR:-default}``, validate it into `Config`.

Every problem is collected before anything is raised, so a user fixes a file in one pass: the checks
that span sections run over the valid part of a file with bad settings too (`gshp.config.salvage`).
Each problem carries the line of the offending node, found by walking the YAML node tree alongside the
data, and says what is allowed in words, in Chinese and then English (`collector.problems`).

Input is bounded before it is expanded: at most `MAX_CONFIG_BYTES`, nesting at most `MAX_DEPTH` levels,
and YAML aliases may add at most `MAX_ALIAS_VALUES` values to what the file writes out (a "billion
laughs" document of nested aliases is refused at once instead of filling the memory). The secrets of a
valid config are registered with `collector.redact` so that no log line or message shows them.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from collector.problems import ZH_ERRORS, ZhEn, error_text, followed
from collector.redact import redact, register_secrets, url_secrets
from gshp.citymap import SUBDOMAINS_PATTERN, TILE_URL_PATTERN
from gshp.config.errors import ConfigError, Problem
from gshp.config.salvage import Salvage, salvage
from gshp.config.schema import LISTEN_PATTERN, PUBLIC_URL_PATTERN, SECRET_FIELDS, Config, cross_check

__all__ = ["MAX_ALIAS_VALUES", "MAX_CONFIG_BYTES", "MAX_DEPTH", "Check", "load_config", "parse_config", "read_yaml",
           "unreadable"]

MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""A city of a thousand sites takes well under 1 MiB."""
MAX_ALIAS_VALUES = 100_000
"""Values that YAML aliases (``*name``) may add beyond those written in the file."""
MAX_DEPTH = 64
"""Levels of nesting (a config needs about eight)."""

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


_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser where PyYAML was built with it: a city of 10 000 meters parses in a second, not 50."""


def _scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    """A scalar node's value as YAML's safe schema reads it (the loader's cache is dropped: no growth)."""
    value = loader.construct_object(node)
    loader.constructed_objects.clear()
    return value


def _construct(node: yaml.Node, path: Path_, lines: _Lines, problems: list[Problem], file: str,
               env: Mapping[str, str], inside: frozenset[int] = frozenset(),
               loader: yaml.SafeLoader | None = None) -> Any:
    loader = loader if loader is not None else yaml.SafeLoader(" ")
    lines.by_path[path] = node.start_mark.line + 1
    if id(node) in inside:  # an alias of an anchor that holds it: the data would never end
        problems.append(Problem(file, node.start_mark.line + 1, _fmt(path),
                                ZhEn("引用了自身（YAML 别名位于它自己的锚点之内）",
                                     "refers to itself (a YAML alias inside its own anchor)")))
        return None
    if isinstance(node, yaml.CollectionNode):
        inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader)  # scalar keys only
            if isinstance(key, str | int):
                if key in out:
                    problems.append(Problem(file, key_node.start_mark.line + 1, _fmt((*path, key)),
                                            ZhEn("在同一映射中出现了两次", "appears twice in the same mapping")))
                out[key] = _construct(value_node, (*path, key), lines, problems, file, env, inside, loader)
                # a setting's line is its key's (a block list or mapping starts on the next line)
                lines.by_path[(*path, key)] = key_node.start_mark.line + 1
            else:
                problems.append(Problem(file, key_node.start_mark.line + 1, _fmt(path),
                                        ZhEn("键须为文本", "keys must be text")))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines, problems, file, env, inside, loader)
                for i, v in enumerate(node.value)]
    value = _scalar(node, loader)
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
                                ZhEn(f"环境变量 {name} 未设置：请 export 它，或写成 ${{{name}:-默认值}}",
                                     f"environment variable {name} is not set: export it, "
                                     f"or write ${{{name}:-default}}")))
        return ""

    return _VAR.sub(sub, text)


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _shown(path: Path_, value: Any) -> str | None:
    keys = [p for p in path if isinstance(p, str)]
    if (keys and keys[-1] in SECRET_FIELDS) or "headers" in keys:  # a secret setting, or a header's value
        return "(hidden)"
    if isinstance(value, dict | list):
        return None
    text = repr(redact(value) if isinstance(value, str) and "://" in value else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _lookup(data: Any, path: Path_) -> Any:
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _pydantic_problems(err: ValidationError, data: Any, lines: _Lines, file: str,
                       earlier: Sequence[Problem] = ()) -> list[Problem]:
    problems = []
    unset = {p.path for p in earlier}  # an unset ${VAR}: what follows from its empty value is not news
    for e in err.errors(include_url=False):
        # pydantic puts union-member and validator names into loc; keep the data path only
        path = _data_path(tuple(p for p in e["loc"] if not (isinstance(p, str) and _is_pseudo(p))), data)
        if _superseded(path, e["type"]) or _fmt(path) in unset:
            continue
        ctx = e.get("ctx", {})
        msg = error_text(e)
        if e["type"] == "extra_forbidden":
            close = _did_you_mean(str(path[-1]), _known_keys(Config, path[:-1]))
            msg = followed(error_text(e, "is not a known setting"), *(close if close[1] else (
                "（请检查拼写，参见 deploy/examples/）", " (check the spelling; see deploy/examples/)")))
        elif e["type"] in ("too_short", "string_too_short", "too_long", "string_too_long"):
            msg = _length_message(e["type"], ctx, _lookup(data, path))
        elif e["type"] in ("literal_error", "enum"):
            msg = followed(msg, *_did_you_mean(_lookup(data, path),
                                               re.findall(r"'([^']*)'", str(ctx.get("expected", "")))))
        elif e["type"] == "missing":
            msg = error_text(e, "is required")
        elif e["type"] == "string_pattern_mismatch":
            msg = _pattern_message(str(ctx.get("pattern", "")))
        elif e["type"] == "union_tag_invalid":
            path = (*path, str(ctx.get("discriminator", "type")).strip("'"))
            msg = error_text(e, f"is not one of {ctx.get('expected_tags', 'the known types')}")
        elif e["type"] == "union_tag_not_found":
            path = (*path, str(ctx.get("discriminator", "type")).strip("'"))
            msg = error_text(e, "is required (it selects which settings apply)")
        problems.append(Problem(file, lines.line(path), _fmt(path), msg,
                                None if e["type"] == "missing" else _shown(path, _lookup(data, path))))
    return problems


def _did_you_mean(value: Any, choices: Iterable[str]) -> tuple[str, str]:
    """(`；是否为 'x'？`, `; did you mean 'x'?`) for a value close to one of `choices`, else ('', '')."""
    if not isinstance(value, str):
        return "", ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    if not close or close[0] == value:
        return "", ""
    return f"；是否为 {close[0]!r}？", f"; did you mean {close[0]!r}?"


_KNOWN = re.compile(r"\(known: ([^)]*)\)")


def _known_suggestion(message: str, value: Any) -> str:
    """The message with a did-you-mean for checks that list what is known: `… (known: a, b, c)`."""
    m = _KNOWN.search(message)
    return followed(message, *_did_you_mean(value, [k.strip() for k in m.group(1).split(",")])) if m else message


def _named(data: Any, path: Path_) -> Any:
    """What a setting at `path` names: its value, or its key where the value is a mapping (an override
    under `rules.sites:` is written under the site's id)."""
    value = _lookup(data, path)
    return path[-1] if isinstance(value, dict) and path and isinstance(path[-1], str) else value


def _known_keys(model: Any, path: Path_) -> list[str]:
    """The setting names (aliases included) the schema allows at `path`, through nested models, lists,
    optional values and unions."""
    types = [model]
    for p in path:
        nxt: list[Any] = []
        for t in types:
            for u in _members(t):
                if isinstance(p, int):
                    nxt += [a for a in get_args(u) if a is not Ellipsis]
                elif isinstance(u, type) and issubclass(u, BaseModel):
                    field = u.model_fields.get(p) or next(
                        (f for f in u.model_fields.values() if f.alias == p), None)
                    if field is not None:
                        nxt.append(field.annotation)
        types = nxt
    keys: list[str] = []
    for t in types:
        for u in _members(t):
            if isinstance(u, type) and issubclass(u, BaseModel):
                keys += [f.alias or name for name, f in u.model_fields.items()]
    return keys


def _members(t: Any) -> list[Any]:
    """A type's union members (Optional included); the type itself otherwise."""
    args = get_args(t)
    if get_origin(t) in (Union, UnionType) or (get_origin(t) is Annotated and args):
        return [m for a in (args[:1] if get_origin(t) is Annotated else args) for m in _members(a)]
    return [t]


def _length_message(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    """Length limits in words: characters for text (and secrets), entries for lists."""
    text = isinstance(value, str) or value is None
    unit = "characters" if text else "entries"
    zh = ZH_ERRORS[f"{'string_' if text else ''}{kind.removeprefix('string_')}"].format_map(ctx)
    if kind.endswith("too_short"):
        return ZhEn(zh, f"must be at least {ctx.get('min_length')} {unit} long")
    return ZhEn(zh, f"must be at most {ctx.get('max_length')} {unit} long")


def _superseded(path: Path_, error_type: str) -> bool:
    """The site's own check (meter ids unique, an extraction and a reinjection meter) fails the whole
    site; `cross_check` reports the same facts at the offending meter, so the site-wide error is left out."""
    return error_type == "value_error" and len(path) == 2 and path[0] == "sites" and isinstance(path[1], int)


_PATTERN_WORDS: Mapping[str, tuple[str, str]] = {
    LISTEN_PATTERN: ("主机:端口，如 127.0.0.1:8080（IPv6 地址写在方括号内：[::1]:8080）",
                     "HOST:PORT, e.g. 127.0.0.1:8080 (an IPv6 address in brackets: [::1]:8080)"),
    r"^https?://": ("http:// 或 https:// 地址，如 http://127.0.0.1:8086",
                    "an http:// or https:// URL, e.g. http://127.0.0.1:8086"),
    r"^[A-Za-z0-9_-]+$": ("只含字母、数字、'_' 和 '-'，如 gshp-collectors",
                          "letters, digits, '_' and '-' only, e.g. gshp-collectors"),
    r"^[NEO]$": ("N（无校验）、E（偶校验）或 O（奇校验）", "N (none), E (even) or O (odd)"),
    r"^(full|normal)$": ("'full' 或 'normal'", "'full' or 'normal'"),
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$":
        ("1-64 个字母、数字、'_'、'.' 或 '-'，以字母或数字开头，如 duty-webhook",
         "1-64 characters of letters, digits, '_', '.' or '-', starting with a letter or digit, e.g. duty-webhook"),
    r"^[A-Za-z0-9_.-]+$": ("只含字母、数字、'_'、'.' 和 '-'，如 hour",
                           "letters, digits, '_', '.' or '-' only, e.g. hour"),
    r"^[^@\s]+@[^@\s]+$": ("电子邮件地址，如 duty@example.org", "an e-mail address, e.g. duty@example.org"),
    r"^[^@\s]+@[^@\s]+$|^.*<[^@\s<>]+@[^@\s<>]+>$":
        ("电子邮件地址，单独写或写在名称之后：alarm@example.org 或 监测平台 <alarm@example.org>",
         "an e-mail address, alone or after a name: alarm@example.org or 监测平台 <alarm@example.org>"),
    r"^[0-9]{6}$": ("六位数字，如 411302", "six digits, e.g. 411302"),
    r"^[A-Za-z0-9]{1,16}-(Rtd|Cou|Avg|Min|Max)$": ("HJ 212 因子字段：编码-Rtd、-Cou、-Avg、-Min 或 -Max，如 w00000-Rtd",
                                                  "an HJ 212 factor field: code-Rtd, -Cou, -Avg, -Min or -Max, "
                                                  "e.g. w00000-Rtd"),
    r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$": ("HTTP 头名称（字母、数字和 !#$%&'*+.^_`|~-），如 Authorization",
                                      "an HTTP header name (letters, digits and !#$%&'*+.^_`|~-), e.g. Authorization"),
    r"^\+?[0-9][0-9-]{2,19}$": ("手机号码，只含数字，如 13800000000", "a mobile number, digits only, e.g. 13800000000"),
    TILE_URL_PATTERN: ("不含空格或引号的 http:// 或 https:// 地址模板，如 http://tiles.example.gov.cn/{z}/{x}/{y}.png",
                       "an http:// or https:// URL template without spaces or quotes, e.g. "
                       "http://tiles.example.gov.cn/{z}/{x}/{y}.png"),
    SUBDOMAINS_PATTERN: ("字母和数字，{s} 所代表的每个子域名一个字符，如 01234567",
                         "letters and digits, one per subdomain {s} stands for, e.g. 01234567"),
    PUBLIC_URL_PATTERN:
        ("不含空格、引号、括号或控制字符的 http:// 或 https:// 地址，如 https://gshp.example.gov.cn",
         "an http:// or https:// URL without spaces, quotes, brackets or control characters, "
         "e.g. https://gshp.example.gov.cn"),
}
"""What a `pattern=` of the schema allows, in words (a regular expression is no help in an error)."""


def _pattern_message(pattern: str) -> str:
    words = _PATTERN_WORDS.get(pattern)
    if words is None:
        return ZhEn(f"不符合规定的格式（正则表达式 {pattern}）", f"does not have the expected form (pattern {pattern})")
    return ZhEn(f"须为：{words[0]}", f"must be {words[1]}")


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


Check = Callable[[Config], Iterable[tuple[Path_, str]]]
"""A check over a whole config that yields (data path, message) for each problem."""


def _checks(config: Config, partial: Salvage, checks: Sequence[Check], earlier: list[Problem], data: Any,
            lines: _Lines, file: str, salvaged: bool) -> list[Problem]:
    """Run `checks` in order, each problem at the file's path; a problem that only repeats or follows
    from an earlier one (a replaced value, a setting already reported) is left out."""
    out: list[Problem] = []
    reported = {p.path for p in earlier}
    for check in checks:
        found: list[Problem] = []
        try:
            for path, message in check(config):
                path = partial.original(path)
                if not partial.touches(path) and _fmt(path) not in reported:
                    found.append(Problem(file, lines.line(path), _fmt(path),
                                         _known_suggestion(message, _named(data, path)),
                                         _shown(path, _lookup(data, path))))
        except Exception:
            if not salvaged:
                raise
            # a check that cannot make sense of the valid parts alone: the problems above come first
            found.append(Problem(file, None, "", ZhEn("上述问题修正后，才会进行跨节的进一步检查",
                                                      "further checks across sections run once the problems "
                                                      "above are fixed")))
        out += found
        reported |= {p.path for p in found}
    return out


def _expansion(root: yaml.Node) -> tuple[int, int, int]:
    """(values once every alias is expanded, distinct nodes written, deepest nesting) of a composed
    document, in time linear in what is written: an alias is the same node object as its anchor, so each
    node's expanded size is computed once."""
    sizes: dict[int, int] = {}
    depth = 0

    def size(node: yaml.Node, level: int) -> int:
        nonlocal depth
        depth = max(depth, level)
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # while in progress: an alias inside its own anchor is reported by _construct
        total = 1
        if level <= MAX_DEPTH:
            if isinstance(node, yaml.SequenceNode):
                total += sum(size(v, level + 1) for v in node.value)
            elif isinstance(node, yaml.MappingNode):
                total += sum(size(k, level + 1) + size(v, level + 1) for k, v in node.value)
        sizes[id(node)] = total
        return total

    expanded = size(root, 1)
    return expanded, len(sizes), depth


def _bounded(nodes: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past `MAX_ALIAS_VALUES` or that nests past `MAX_DEPTH`."""
    expanded, written, depth = _expansion(nodes)
    if depth > MAX_DEPTH:
        raise ConfigError([Problem(file, None, "", _too_deep())])
    if expanded - written > MAX_ALIAS_VALUES:
        raise ConfigError([Problem(file, None, "", ZhEn(
            f"被拒绝：其 YAML 别名（*name）会把写出的 {written:,} 个值展开为 {expanded:,} 个，超过别名最多可增加的 "
            f"{MAX_ALIAS_VALUES:,} 个（“十亿笑声”式文档？）；请把值写出来，或少用嵌套的别名",
            f"is refused: its YAML aliases (*name) would expand {written:,} written values to "
            f"{expanded:,}, more than the {MAX_ALIAS_VALUES:,} aliases may add (a \"billion laughs\" "
            "document?); write the values out or use fewer nested aliases"))])


def _too_deep() -> str:
    return ZhEn(f"嵌套超过 {MAX_DEPTH} 层：配置约需 8 层，请把文档写得扁平些",
                f"nests deeper than {MAX_DEPTH} levels: a config needs about eight; flatten the document")


_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey"})


def _secrets(value: Any) -> Iterator[str]:
    """Every secret a config holds: secret settings, and the credentials and keys inside its URLs."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        yield secret
        # a header's credential alone too: "Bearer <token>" is also shown as just the token
        yield from (part for part in secret.split() if part.lower() not in _AUTH_SCHEMES)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _secrets(v)
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _secrets(v)
    elif isinstance(value, str) and "://" in value:
        yield from url_secrets(value)


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None, *,
                 checks: Sequence[Check] = (), uses: Collection[str] | None = None) -> Config:
    """Validate config text; raise `ConfigError` listing every problem.

    Every layer runs in one pass: the YAML and the environment variables, each setting, the checks that
    span sections (`cross_check`), then the extra `checks` (e.g. the collector's planning) — the last two
    over the valid part of the file when some settings are wrong (see `gshp.config.salvage`).

    A command that reads only some top-level sections names them in `uses`: problems elsewhere (an unset
    token variable for `gshp poll`) are not its concern, and a section it does not use that cannot be
    read is left at its defaults — the checks still see the valid part of it (an MQTT meter is not
    refused for want of the broker section whose password is wrong)."""
    env = os.environ if env is None else env
    problems: list[Problem] = []
    nodes = _compose(text, file)
    lines = _Lines()
    data = _construct(nodes, (), lines, problems, file, env)
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", ZhEn("须为设置项的映射（timezone:、sites: 等）",
                                                     "must be a mapping of settings (timezone:, sites:, …)"))])
    config: Config | None = None
    whole = True  # the config holds every section as the file writes it
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        whole = False
        problems.extend(_pydantic_problems(err, data, lines, file, problems))
        failed = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        unused = failed - set(uses or ())
        if uses is not None and failed == unused:  # only sections this command does not read are wrong
            with contextlib.suppress(ValidationError):
                config = Config.model_validate({k: v for k, v in data.items() if k not in unused})
    checked, partial = (config, Salvage()) if whole else salvage(Config, data)
    if checked is not None:
        problems += _checks(checked, partial, (cross_check, *checks), problems, data, lines, file,
                            salvaged=not whole)
    if uses is not None:
        problems = [p for p in problems if not p.path or _section(p.path) in uses]
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ConfigError(problems)
    assert config is not None
    register_secrets(_secrets(config))
    return config


def _too_large(file: str, size: int) -> Problem:
    return Problem(file, None, "", ZhEn(f"有 {size:,} 字节，超过配置文件的上限（{MAX_CONFIG_BYTES:,} 字节）："
                                        "是否选错了文件？",
                                        f"is {size:,} bytes, more than a config may be ({MAX_CONFIG_BYTES:,} bytes): "
                                        "is it the right file?"))


def _section(path: str) -> str:
    """The top-level section of a problem's path (`api.tokens[0].token` → `api`)."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *,
                checks: Sequence[Check] = (), uses: Collection[str] | None = None) -> Config:
    return parse_config(_read_text(Path(path)), str(path), env, checks=checks, uses=uses)


def read_yaml(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Any:
    """A YAML file that is not the config (a rules file), read under the same bounds (size, depth, alias
    expansion) with `${VAR}`s filled in; `ConfigError` listing every problem."""
    problems: list[Problem] = []
    data = _construct(_compose(_read_text(Path(path)), str(path)), (), _Lines(), problems, str(path),
                      os.environ if env is None else env)
    if problems:
        raise ConfigError(problems)
    return data


def unreadable(exc: OSError) -> str:
    """A config file that cannot be read, and the system's reason."""
    return ZhEn(f"无法读取：{exc.strerror}", f"cannot be read: {exc.strerror}")


def _read_text(p: Path) -> str:
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError([_too_large(str(p), max(len(raw), os.fstat(f.fileno()).st_size))])
        return raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, "", unreadable(exc))]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(p), None, "", ZhEn("不是 UTF-8 文本", "is not UTF-8 text"))]) from None


def _compose(text: str, file: str) -> yaml.Node:
    """The document's node tree, within the size, depth and alias-expansion bounds."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([_too_large(file, size)])
    try:
        nodes = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", exc)
        raise ConfigError([Problem(file, mark.line + 1 if mark else None, "",
                                   ZhEn(f"不是有效的 YAML：{what}", f"is not valid YAML: {what}"))]) from None
    except RecursionError:
        raise ConfigError([Problem(file, None, "", _too_deep())]) from None
    if nodes is None:
        raise ConfigError([Problem(file, None, "", ZhEn("是空的：可从 deploy/examples/ 中的示例开始",
                                                        "is empty: see deploy/examples/ for a starting point"))])
    _bounded(nodes, file)
    return nodes
