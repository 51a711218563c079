"""Secrets written into a config file that other users can read: found by looking at the file's text.

A value is a secret when its key looks like one (password, token, secret, key, sign…) or it is a URL with
a password or a token in it, and it is written literally — a value taken from the environment
(``${INFLUX_TOKEN}``) is not in the file. Only the line numbers and keys are reported, never the values.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

__all__ = ["exposed_secrets", "readable_by_others"]

_PAIR = re.compile(r"([A-Za-z0-9_.-]+)[\"']?\s*:\s+([^,{}\[\]]*)")  # block and flow style: key: value
_SECRET_WORDS = {"pass", "password", "passwd", "token", "secret", "apikey", "credential", "credentials", "sign"}
_SECRET_PAIRS = ("api_key", "private_key", "signing_key", "access_key")
_URL_SECRET = re.compile(r"://[^/\s:@]+:[^@\s]+@|[?&][^=&\s]*(token|key|secret|password|sign)[^=&\s]*=[^&\s'\"}]+",
                         re.IGNORECASE)
_FROM_ENV = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def _literal(value: str) -> str:
    """The value without quotes and environment references ("" for none, null or a block scalar's mark)."""
    value = _FROM_ENV.sub("", value.strip().strip("\"'")).strip()
    return "" if value in ("null", "~", "|", ">", "|-", ">-") else value


def _secret_key(key: str) -> bool:
    """password, mqtt_password, token, api_key, secret… but not a path to a file that holds one."""
    low = key.lower().replace("-", "_")
    parts = low.split("_")
    if parts[-1] in ("file", "path", "dir"):
        return False
    return bool(_SECRET_WORDS.intersection(parts)) or any(p in low for p in _SECRET_PAIRS)


def exposed_secrets(text: str) -> list[str]:
    """``line N (key)`` for every literal secret in a config file's text."""
    found: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = _FROM_ENV.sub("", re.sub(r"(^|\s)#.*$", "", line))  # a value from the environment is not here
        keys = [m.group(1) for m in _PAIR.finditer(line) if _literal(m.group(2)) and _secret_key(m.group(1))]
        if keys:
            found.append(f"line {n} ({', '.join(keys)})")
        elif _URL_SECRET.search(line):
            found.append(f"line {n} (a URL with credentials)")
    return found
