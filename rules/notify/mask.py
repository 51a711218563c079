"""Hide credentials that live inside URLs (robot `access_token` / `key`, userinfo) before showing one."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["SECRET_QUERY_KEYS", "mask_text", "mask_url"]

SECRET_QUERY_KEYS = frozenset({"access_token", "key", "token", "sign", "secret", "password"})

_QUERY_SECRET = re.compile(r"(?i)\b(access_token|key|token|sign|secret|password)=([^&\s\"']+)")


def mask_url(url: str) -> str:
    """``https://oapi.dingtalk.com/robot/send?access_token=abc`` → ``…?access_token=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_KEYS else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_text(text: str) -> str:
    """Mask ``key=value`` secrets wherever they appear in free text (exception messages)."""
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}=***", text)
