"""Configuration errors that name the file, line, field, bad value and the fix, in Chinese and English."""

from __future__ import annotations

from dataclasses import dataclass

from collector.problems import followed

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
        message = self.message
        if self.value is not None:  # in the Chinese of a message in both languages too
            zh = "（填写值已隐藏）" if self.value == "(hidden)" else f"（填写值：{self.value}）"
            message = followed(message, zh, f" (got {self.value})")
        return f"{where}:{field} {message}"


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
