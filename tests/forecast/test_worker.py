"""The forecast's workflow worker in its own process: the same answer as in one process, and no
process left behind."""

from __future__ import annotations

import asyncio
import os
from datetime import date

import pytest

from disputeflow.forecast import ForecastSpec
from disputeflow.forecast.report import build
from disputeflow.forecast.simulation import Simulation
from disputeflow.settings import DEFAULT_POLICY_FILE

SPEC = ForecastSpec(
    region_code="370102", start=date(2027, 3, 1), weeks=1, runs=1, seed=3,
    arrivals=[{"category": "dispute", "per_week": 0}],
    exact_arrivals=[("2027-03-02T22:10:00+08:00", "dispute", "neighbours", "emergency"),
                    ("2027-03-03T10:00:00+08:00", "consultation", "other", "normal"),
                    ("2027-03-03T11:00:00+08:00", "dispute", "labour_wages", "normal")],
)


def _run(worker_process: bool) -> tuple[Simulation, dict]:
    sim = Simulation(SPEC, policy=DEFAULT_POLICY_FILE, worker_process=worker_process)
    result = build(asyncio.run(sim.run()))
    (level,) = result.levels
    return sim, {r.clock: (r.started, r.rated, r.compliance) for r in level.clocks}


def test_the_worker_process_answers_as_one_process_does_and_is_gone_after() -> None:
    sim, apart = _run(True)
    assert sim.worker_pid is not None
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(sim.worker_pid, 0)
    assert sim.timings["cpu_workflow_worker"] > 0
    together, figures = _run(False)
    assert together.worker_pid is None
    assert apart == figures
    assert apart["emergency_response"] == (1, 1, 1.0) and apart["triage_response"][0] == 3
