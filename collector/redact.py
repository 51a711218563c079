"""Hide secrets in any text before it leaves the process: a log line, an error message, a status page.

`redact(text)` masks, wherever they appear in the text:

- the credentials of a URL (``http://admin:pw@host`` → ``http://***@host``);
- values whose names look secret, in a query, a form or a mapping (``token=…``, ``apikey=…``,
  ``"password": "…"``);
- webhook keys carried in a URL's path (Feishu/Lark ``/bot/v2/hook/<key>``, Slack ``/services/…``,
  Discord ``/webhooks/<id>/<token>``, any long random path segment);
- ``Authorization`` / ``Bearer`` / ``Basic`` credentials and API-key headers;
- every secret string registered with `register_secrets` (the configuration's passwords, tokens, keys,
  robot keys and the secret parts of its URLs), as written and URL-encoded.

`install_log_redaction()` makes every log record pass through `redact` when it is created, whatever
logger or handler it goes to, and routes uncaught exceptions through logging too.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = ["MASK", "install_log_redaction", "redact", "register_secrets", "url_secrets"]

MASK = "***"

_SECRET_WORD = (r"(?:token|tokens|secret|secrets|password|passwd|passphrase|api[_-]?key|access[_-]?key|credentials?"
                r"|(?<![A-Za-z])(?:sign|signature|pwd|key|keys|tk)|(?-i:(?<=[a-z])(?:Sign|Signature|Key|Keys)))")
_SECRET_NAME = rf"[A-Za-z0-9_.-]*?{_SECRET_WORD}(?:[_.-][A-Za-z0-9]+)*"
"""A name whose value is a secret: ``token``, ``access_token``, ``apikey``, ``X-Api-Key``, ``password``,
``sign``, ``key`` (WeCom), ``tk`` (天地图), ``client_secret``, ``accessKey`` … (case-insensitive, as a whole
name; ``signal`` or ``monkey`` are not)."""

_NAME_RE = re.compile(rf"(?i)^{_SECRET_NAME}$")
_QUERY_PAIR = re.compile(rf"(?i)(?<![A-Za-z0-9_.-])({_SECRET_NAME})=('[^']*'|\"[^\"]*\"|[^&\s\"'<>,;)\]}}]+)")
_MAPPING_PAIR = re.compile(rf"(?i)([\"']?)({_SECRET_NAME})\1(\s*:\s*)([\"'])(.*?)\4")
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie)(\s*[:=]\s*)"
                          r"([^\r\n\"',}]+)")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|digest)\s+(?=[A-Za-z0-9._~+/=-]*[0-9]|[A-Za-z0-9._~+/=-]{16})"
                                r"([A-Za-z0-9._~+/=-]{8,})")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
_PATH = re.compile(r"(?<![\w:/.@-])(?:/[A-Za-z0-9_.~%+=-]+){2,}/?")
"""A path without scheme and host, as a library shows the URL it failed on (``url: /bot/v2/hook/…``)."""
_HOOK_WORDS = frozenset({"hook", "hooks", "webhook", "webhooks", "services", "incoming"})
_RANDOM_SEGMENT = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_=~+.-]{20,}$")
_HOOK_KEY_SEGMENT = re.compile(r"^(?=.*[0-9A-Z])[A-Za-z0-9_=~+.-]{8,}$")
_MIN_REGISTERED = 6  # shorter strings would mask ordinary words; they are still masked by their position

_lock = threading.Lock()
_registered: tuple[str, ...] = ()
_registered_re: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret strings (passwords, tokens, keys) so that `redact` hides them wherever they appear,
    also URL-encoded. Called when the configuration is loaded; registering again adds to the set."""
    global _registered, _registered_re
    with _lock:
        found = set(_registered)
        for v in values:
            if v and len(v) >= _MIN_REGISTERED:
                found.update({v, quote(v, safe=""), quote(v, safe="/"), quote(v, safe="@:/")})
        ordered = tuple(sorted(found, key=len, reverse=True))
        if ordered != _registered:
            _registered = ordered
            _registered_re = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: its userinfo password (and user), secret-named query values and
    webhook keys in its path — what a configured URL registers with `register_secrets`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out: list[str] = []
    if parts.password:
        out += [parts.password, unquote(parts.password)]
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if value and _NAME_RE.match(unquote(name)):
            out += [value, unquote(value)]
    segments = parts.path.split("/")
    out += [s for i, s in enumerate(segments) if _secret_segment(segments, i)]
    return out


def _secret_segment(segments: list[str], i: int, in_url: bool = True) -> bool:
    """A webhook key: a segment after ``hook``/``webhooks``/``services``… with a digit or a capital, or
    in a URL any long segment of letters and digits (a file path's long names are not keys)."""
    segment = segments[i]
    if in_url and _RANDOM_SEGMENT.match(segment):
        return True
    after_hook = any(s.lower() in _HOOK_WORDS for s in segments[:i])
    return after_hook and bool(_HOOK_KEY_SEGMENT.match(segment))


def _redact_url(url: str) -> str:
    """``http://admin:pw@h:8086/hook/K3y?token=t&db=x`` → ``http://***@h:8086/hook/***?token=***&db=x``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_pairs(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    path = _redact_path(parts.path)
    query = "&".join(_redact_pair(p) for p in parts.query.split("&")) if parts.query else ""
    fragment = _redact_pairs(parts.fragment)
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _redact_path(path: str, in_url: bool = True) -> str:
    segments = path.split("/")
    return "/".join(MASK if _secret_segment(segments, i, in_url) else s for i, s in enumerate(segments))


def _redact_pair(pair: str) -> str:
    name, eq, value = pair.partition("=")
    return f"{name}={MASK}" if eq and value and _NAME_RE.match(unquote(name)) else pair


def _redact_pairs(text: str) -> str:
    text = _MAPPING_PAIR.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{MASK}{m[4]}", text)
    return _QUERY_PAIR.sub(lambda m: f"{m[1]}={MASK}", text)


def redact(text: str) -> str:
    """`text` with every secret it carries masked as ``***`` (see the module's docstring)."""
    if not text:
        return text
    pattern = _registered_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL.sub(lambda m: _redact_url(m[0]), text)
    text = _PATH.sub(lambda m: _redact_path(m[0], in_url=False), text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m[1]} {MASK}", text)
    return _redact_pairs(text)


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: left for the handler to report as usual
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed = False


def install_log_redaction() -> None:
    """Redact every log record as it is created (so no handler, ours or a library's, sees a secret), and
    log uncaught exceptions of the main thread and of other threads instead of printing them raw."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(make(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    uncaught = logging.getLogger("gshp.uncaught")

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        uncaught.critical("uncaught exception", exc_info=(kind, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        uncaught.error("uncaught exception in thread %s", name,
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
