"""What each benchmark measured, as `bench.py` collects it: `--json FILE` on a benchmark writes its
figures there, each with its goal and the baseline measured in the same run."""

from __future__ import annotations

import json
import math
import time
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


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot (Linux /proc/stat); (0, 0) elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)  # idle + iowait


def settle(*, idle: float = 0.85, window: float = 2.0, patience: float = 60.0) -> str:
    """Wait until the CPUs were at least `idle` idle over the last `window` seconds (what the previous
    step left running, such as a seed's writeback or a stopped server, has finished), at most
    `patience` seconds. Returns what happened, to print beside the figures."""
    began = time.monotonic()
    share = 1.0
    while True:
        idle_0, total_0 = _cpu_times()
        time.sleep(window)
        idle_1, total_1 = _cpu_times()
        share = (idle_1 - idle_0) / (total_1 - total_0) if total_1 > total_0 else 1.0
        waited = time.monotonic() - began
        if share >= idle or waited >= patience:
            return (f"waited {waited:.0f} s for the CPUs to settle: {share:.0%} idle over {window:.0f} s"
                    + ("" if share >= idle else f" (under {idle:.0%}: measured anyway)"))
