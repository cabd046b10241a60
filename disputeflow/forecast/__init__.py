"""Staffing forecasts: the real case workflow run over simulated weeks (see `simulation`)."""

from __future__ import annotations

from pathlib import Path

from disputeflow.forecast.report import Forecast, build, text
from disputeflow.forecast.simulation import Progress, simulate
from disputeflow.forecast.spec import ForecastSpec


def forecast(spec: ForecastSpec, *, policy_file: Path, progress: Progress | None = None, **kwargs) -> Forecast:
    if problems := spec.problems():
        raise ValueError("; ".join(problems))
    return build(simulate(spec, policy=policy_file, progress=progress, **kwargs))


__all__ = ["Forecast", "ForecastSpec", "build", "forecast", "text"]
