"""What a scenario hands back: figures, each optionally set against a baseline measured
in the same run and judged against the issue's target."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None  # as the target reads it (e.g. ownkey / floor)
    ratio_label: str = ""  # what the ratio is, e.g. "ownkey/floor"
    target: str = ""  # e.g. "<= 2.0x"
    passed: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return ""
        return "PASS" if self.passed else "MISS"


@dataclass
class ScenarioResult:
    key: str  # "1".."7"
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def completed(self) -> bool:
        return self.error is None and bool(self.figures)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "completed": self.completed,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "figures": [{**asdict(f), "verdict": f.verdict} for f in self.figures],
        }


def at_most(ratio: float | None, limit: float) -> bool | None:
    return None if ratio is None else ratio <= limit


def at_least(ratio: float | None, limit: float) -> bool | None:
    return None if ratio is None else ratio >= limit


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
