"""`make bench`'s table (benchmarks/bench.py): goals, baselines and ratios as the figures say them,
and every benchmark it runs takes the `--json` it passes (a renamed option would fail here, not in
a 20-minute run)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402
from figures import Figure, read, write  # noqa: E402


def test_a_figure_meets_its_goal_by_its_direction_and_has_a_ratio_only_with_a_baseline(tmp_path: Path) -> None:
    latency = Figure("latency p95", 199.0, "ms", goal=250, baseline=192.0, baseline_is="raw starts")
    rate = Figure("rate", 80.0, "/s", goal=90.0, at_most=False, baseline=100.0, baseline_is="raw starts")
    context = Figure("CPU", 4.0, "ms")
    missing = Figure("replay", math.nan, "ms", goal=50)
    assert (latency.met, rate.met, context.met, missing.met) == (True, False, None, None)
    assert latency.ratio == pytest.approx(199 / 192) and rate.ratio == 0.8 and context.ratio is None
    write(tmp_path / "f.json", [latency, rate, context])
    assert read(tmp_path / "f.json") == [latency, rate, context]
    lines = bench.table([latency, rate, context]).splitlines()
    assert lines[2] == "| latency p95 | 199 ms | ≤ 250 ms | yes | 192 ms: raw starts | 1.04 |"
    assert lines[3] == "| rate | 80 /s | ≥ 90 /s | **no** | 100 /s: raw starts | 0.80 |"
    assert lines[4] == "| CPU | 4.00 ms | — |  | — | — |"


@pytest.mark.parametrize("script", ["case_workflow.py", "breach_lateness.py", "read_model_scale.py",
                                    "forecast_speed.py", "bench.py"])
def test_every_benchmark_bench_runs_takes_json(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stderr
    assert ("--json" in done.stdout) == (script != "bench.py")
