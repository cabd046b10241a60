"""Reads while no worker runs: an open case answers from the read model, marked with its age."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import SUPERVISOR, FaultStack, assert_allowed, until

pytestmark = pytest.mark.faults

QUERY_TIMEOUT_SECONDS = 3  # api.cases.QUERY_TIMEOUT


async def test_an_open_case_reads_from_the_read_model_while_no_worker_runs(stack: FaultStack) -> None:
    case_id = await stack.open_case()
    live = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))
    assert live.status_code == 200 and live.json()["source"] == "workflow", live.text

    await stack.kill_worker()
    began = time.monotonic()
    response = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))
    elapsed = time.monotonic() - began

    assert assert_allowed(response) == 200
    body = response.json()
    assert body["source"] == "read_model"
    assert body["as_of"] is not None
    as_of = datetime.fromisoformat(body["as_of"])
    assert as_of.tzinfo is not None and 0 <= (datetime.now(UTC) - as_of).total_seconds() < 120, as_of
    assert (body["case_id"], body["stage"]) == (case_id, live.json()["stage"])
    assert elapsed < QUERY_TIMEOUT_SECONDS + 3, elapsed  # the query's timeout, then the read model

    # A new worker: the workflow answers again once the server stops waiting for the dead one's
    # sticky queue (5 s); meanwhile every answer is still the read model's, never an error.
    await stack.start_worker()

    async def live_again() -> bool:
        again = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))
        assert assert_allowed(again) == 200
        return again.json()["source"] == "workflow"

    await until("the workflow answers again", live_again, 30, pause=0.5)
