"""Quoting for InfluxQL: every value or name put into a query goes through one of these."""

from __future__ import annotations

__all__ = ["quote_ident", "quote_literal"]


def quote_literal(value: str) -> str:
    """An InfluxQL string literal: single quotes, with backslash, quote and line break escaped (a raw line
    break ends the literal: InfluxDB would refuse the query)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def quote_ident(value: str) -> str:
    """An InfluxQL identifier: double quotes, with backslash, quote and line break escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
