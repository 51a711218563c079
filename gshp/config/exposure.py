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

_KEY = re.compile(r"^\s*(?:-\s+)?[\"']?([A-Za-z0-9_.-]+)[\"']?\s*:\s*(.*?)\s*$")
_SECRET_WORDS = {"pass", "password", "passwd", "token", "secret", "apikey", "credential", "credentials", "sign"}
_SECRET_PAIRS = ("api_key", "private_key", "signing_key", "access_key")
_URL_SECRET = re.compile(r"://[^/\s:@]+:[^@\s]+@|[?&](token|key|secret|password|sign|apikey)=[^&\s]+",
                         re.IGNORECASE)
_FROM_ENV = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def _literal(value: str) -> str:
    """The value without a trailing comment and quotes, with environment references removed."""
    value = re.sub(r"\s+#.*$", "", value).strip().strip("\"'")
    return _FROM_ENV.sub("", value).strip()


def _secret_key(key: str) -> bool:
    """password, mqtt_password, token, api_key, secret… but not a path to a file that holds one."""
    low = key.lower().replace("-", "_")
    parts = low.split("_")
    if parts[-1] in ("file", "path", "dir"):
        return False
    return bool(_SECRET_WORDS.intersection(parts)) or any(p in low for p in _SECRET_PAIRS)


def exposed_secrets(text: str) -> list[str]:
    """``line N (key)`` for every literal secret in a config file's text."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        m = _KEY.match(line)
        key, value = (m.group(1), _literal(m.group(2))) if m else ("", _literal(line))
        if not value or value in ("|", ">", "null", "~"):
            continue
        if (key and _secret_key(key)) or _URL_SECRET.search(value):
            found.append(f"line {n} ({key})" if key else f"line {n}")
    return found
