"""Order statistics of a list of durations."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    min: float
    p50: float
    p95: float
    max: float
    p99: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "min": self.min,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the samples at or below it."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values: list[float]) -> Summary | None:
    if not values:
        return None
    ordered = sorted(values)
    return Summary(
        len(ordered),
        ordered[0],
        percentile(ordered, 0.5),
        percentile(ordered, 0.95),
        ordered[-1],
        percentile(ordered, 0.99),
    )
