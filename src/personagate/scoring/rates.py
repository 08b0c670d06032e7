"""Refusal rates with Wilson 95% intervals, overall and per category."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (well-behaved at 0 and n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Rate:
    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.1%} [{low:.1%}, {high:.1%}] (n={self.n})"


def refusal_rate(flags: Sequence[int | bool]) -> Rate:
    return Rate(k=sum(int(f) for f in flags), n=len(flags))


def rates_by_category(flags: Sequence[int | bool], categories: Sequence[str | None]) -> dict[str, Rate]:
    """One rate per category (``None`` counts as ``"uncategorised"``)."""
    groups: dict[str, list[int]] = {}
    for flag, category in zip(flags, categories, strict=True):
        groups.setdefault(category or "uncategorised", []).append(int(flag))
    return {name: refusal_rate(values) for name, values in sorted(groups.items())}
