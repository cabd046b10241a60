"""Staffing forecasts: the real case workflow run over simulated weeks (see `simulation`).

The names below are loaded on first use, so that the forecast's workflow worker process
(`disputeflow.forecast.worker`) starts without the driver and the report it does not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from disputeflow.forecast.report import Forecast, build, text
    from disputeflow.forecast.simulation import Progress
    from disputeflow.forecast.spec import ForecastSpec


def forecast(spec: ForecastSpec, *, policy_file: Path, progress: Progress | None = None, **kwargs) -> Forecast:
    from disputeflow.forecast.report import build
    from disputeflow.forecast.simulation import simulate

    if problems := spec.problems():
        raise ValueError("; ".join(problems))
    return build(simulate(spec, policy=policy_file, progress=progress, **kwargs))


def __getattr__(name: str) -> Any:
    if name in ("Forecast", "build", "text"):
        from disputeflow.forecast import report

        return getattr(report, name)
    if name == "ForecastSpec":
        from disputeflow.forecast.spec import ForecastSpec

        return ForecastSpec
    raise AttributeError(name)


__all__ = ["Forecast", "ForecastSpec", "build", "forecast", "text"]
