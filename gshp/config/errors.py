"""Configuration errors that name the file, line, field, bad value and the fix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "Problem"]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str  # e.g. sites[0].meters[1].role
    message: str
    value: str | None = None  # repr of the offending value, secrets masked

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        got = f" (got {self.value})" if self.value is not None else ""
        return f"{where}:{field} {self.message}{got}"


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
