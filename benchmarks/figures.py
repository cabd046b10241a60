"""What each benchmark measured, as `bench.py` collects it: `--json FILE` on a benchmark writes its
figures there, each with its goal and the baseline measured in the same run."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    name: str
    measured: float
    unit: str  # "ms", "s", "/s", "MiB", "" (a ratio)
    goal: float | None = None  # None: shown for context, no goal
    at_most: bool = True  # the goal is a ceiling (latency) or, if False, a floor (a rate or a ratio)
    baseline: float | None = None  # the same thing measured without what is being measured
    baseline_is: str = ""  # what the baseline is

    @property
    def met(self) -> bool | None:
        if self.goal is None or math.isnan(self.measured):
            return None
        return self.measured <= self.goal if self.at_most else self.measured >= self.goal

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.baseline) or math.isnan(self.measured):
            return None
        return self.measured / self.baseline


def write(path: str | Path | None, figures: list[Figure]) -> None:
    """Write the figures where `--json` said (nothing when it was not given)."""
    if path:
        Path(path).write_text(json.dumps([asdict(f) for f in figures], ensure_ascii=False, indent=1),
                              encoding="utf-8")


def read(path: str | Path) -> list[Figure]:
    return [Figure(**item) for item in json.loads(Path(path).read_text(encoding="utf-8"))]
