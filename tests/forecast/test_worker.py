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
    raw = asyncio.run(sim.run())
    # Short (asyncio.run words it as it ends), not every case's tasks and clocks.
    assert repr(raw) == f"SimResult(scenarios=1, cases=3, actions={raw.actions}, seconds={raw.seconds:.1f})"
    result = build(raw)
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


def test_the_payload_walks_are_skipped_only_where_they_change_nothing() -> None:
    """The forecast's converter (no codec, no external storage): the SDK's three walks over a
    completion's payloads are skipped. Any other converter (here one with a codec, as the real
    worker's) is still walked and its codec applied. The SDK's workflow worker must look the walks
    up where the forecast wraps them: if it moves them, this fails rather than the skip going quiet."""
    import inspect
    from collections.abc import Sequence

    import temporalio.bridge.worker as bridge
    import temporalio.worker._workflow as sdk_workflow_worker
    from temporalio.api.common.v1 import Payload
    from temporalio.bridge.proto.workflow_commands import CompleteWorkflowExecution, WorkflowCommand
    from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
    from temporalio.converter import DataConverter, PayloadCodec

    from disputeflow.forecast import worker as forecast_worker

    source = inspect.getsource(sdk_workflow_worker)
    assert "temporalio.bridge.worker.decode_activation(" in source
    assert "temporalio.bridge.worker.encode_completion(" in source
    assert getattr(bridge.decode_activation, "forecast_wrapper", False)
    assert getattr(bridge.encode_completion, "forecast_wrapper", False)

    class Marking(PayloadCodec):
        async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
            return [Payload(metadata={**p.metadata, "marked": b"1"}, data=p.data) for p in payloads]

        async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
            return list(payloads)

    def completion() -> WorkflowActivationCompletion:
        done = WorkflowCommand(complete_workflow_execution=CompleteWorkflowExecution(result=Payload(data=b'"ok"')))
        out = WorkflowActivationCompletion(run_id="r")
        out.successful.commands.append(done)
        return out

    async def encoded(converter: DataConverter) -> Payload:
        c = completion()
        await bridge.encode_completion(c, converter, encode_headers=False, storage_concurrency_limit=1)
        return c.successful.commands[0].complete_workflow_execution.result

    forecast_dc = forecast_worker.data_converter
    assert forecast_worker._identity_visits(forecast_dc)
    assert "marked" not in asyncio.run(encoded(forecast_dc)).metadata
    with_codec = DataConverter(payload_converter_class=forecast_worker.SharedPydanticPayloadConverter,
                               payload_codec=Marking())
    assert not forecast_worker._identity_visits(with_codec)
    assert asyncio.run(encoded(with_codec)).metadata["marked"] == b"1"
    assert not forecast_worker._identity_visits(DataConverter.default)
