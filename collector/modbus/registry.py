"""The profile registry: packaged profiles plus any directory a user passes in.

Profiles are registered explicitly (`ProfileRegistry.register`) or loaded from YAML files
(`load_dir`); a file may start from another profile with ``extends: NAME`` and override keys.
`PROFILES` holds the packaged profiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from collector.modbus.errors import ProfileError
from collector.modbus.profile import Profile
from collector.problems import KNOWN_ZH, ZhEn

__all__ = ["PROFILES", "ProfileRegistry", "parse_profile"]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_profile(data: Any, origin: str) -> Profile:
    """Validate one profile mapping; every problem is named with its origin and key path."""
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors(include_url=False):
            loc = ".".join(str(p) for p in e["loc"])
            lines.append(f"{origin}: {loc or 'profile'}: {e['msg'].removeprefix('Value error, ')}")
        raise ProfileError("\n".join(lines)) from None


class ProfileRegistry:
    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}
        self._raw: dict[str, dict[str, Any]] = {}

    def register(self, profile: Profile, raw: dict[str, Any] | None = None) -> None:
        if profile.name in self._profiles:
            raise ProfileError(f"profile {profile.name!r} is defined twice")
        self._profiles[profile.name] = profile
        self._raw[profile.name] = raw if raw is not None else profile.model_dump(mode="json")

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = self.names()
            raise ProfileError(ZhEn(f"没有寄存器配置 {name!r}{KNOWN_ZH}{'、'.join(known) or '无'}）",
                                    f"unknown register profile {name!r} (known: {', '.join(known)})")) from None

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._profiles.values())

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def copy(self) -> ProfileRegistry:
        new = ProfileRegistry()
        new._profiles = dict(self._profiles)
        new._raw = dict(self._raw)
        return new

    def load_texts(self, texts: dict[str, str]) -> None:
        """Load profiles from {origin: YAML text}; bases named by ``extends:`` may come in any order."""
        pending: dict[str, tuple[str, dict[str, Any]]] = {}
        problems: list[str] = []
        for origin, text in sorted(texts.items()):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                problems.append(f"{origin}: not valid YAML: {exc}")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                problems.append(f"{origin}: a profile is a mapping with a `name:`")
                continue
            pending[data["name"]] = (origin, data)
        for _ in range(len(pending) + 1):
            progressed = False
            for name, (origin, data) in list(pending.items()):
                base_name = data.get("extends")
                if base_name is not None and base_name not in self._raw:
                    continue
                body = {k: v for k, v in data.items() if k != "extends" and not k.startswith("_")}
                merged = _merge(self._raw[base_name], body) if base_name is not None else body
                try:
                    self.register(parse_profile(merged, origin), merged)
                except ProfileError as exc:
                    problems.append(str(exc))
                del pending[name]
                progressed = True
            if not progressed:
                break
        for name, (origin, data) in pending.items():
            problems.append(f"{origin}: profile {name!r} extends unknown profile {data.get('extends')!r}")
        if problems:
            raise ProfileError("\n".join(problems))

    def load_dir(self, directory: str | Path) -> None:
        """Load every ``*.yaml`` in a user's profile directory."""
        d = Path(directory)
        if not d.is_dir():
            raise ProfileError(f"profile directory {d} does not exist")
        self.load_texts({str(p): p.read_text(encoding="utf-8") for p in sorted(d.glob("*.yaml"))})

    @classmethod
    def packaged(cls) -> ProfileRegistry:
        reg = cls()
        root = resources.files("collector.modbus") / "profiles"
        reg.load_texts({f"profiles/{p.name}": p.read_text(encoding="utf-8")
                        for p in root.iterdir() if p.name.endswith(".yaml")})
        return reg


PROFILES = ProfileRegistry.packaged()
