"""Exponential backoff with full jitter, as a pure function of the attempt number."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 60.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the n-th consecutive failure (attempt ≥ 1)."""
        return min(self.cap, self.base * self.factor ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay drawn uniformly from [ceiling/2, ceiling] ("equal jitter"): never zero, never in step."""
        c = self.ceiling(attempt)
        return c / 2 + (rng or random).random() * c / 2
