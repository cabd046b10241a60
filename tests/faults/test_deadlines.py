"""Workers down past several deadlines: on their return every clock breaches once, escalates once
and notifies once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import EMERGENCY_SECONDS, FaultStack, until

pytestmark = pytest.mark.faults

CASES = 5
DOWN_FOR_SECONDS = 3 * EMERGENCY_SECONDS  # every clock falls due while no worker runs


async def test_clocks_due_while_the_worker_was_down_fire_once(stack: FaultStack) -> None:
    case_ids = [await stack.open_case(urgency="emergency", dispute_type="neighbours") for _ in range(CASES)]
    clocks = stack.query("SELECT case_id, due_at FROM clocks WHERE case_id IN :ids AND name = 'emergency_response'",
                         ids=case_ids)
    assert sorted(c.case_id for c in clocks) == sorted(case_ids)

    await stack.stop_worker()
    await asyncio.sleep(DOWN_FOR_SECONDS)
    back_at = datetime.now(UTC)
    assert all(datetime.fromisoformat(c.due_at).replace(tzinfo=UTC) < back_at for c in clocks)  # all overdue
    await stack.start_worker()

    def breached() -> bool:
        return stack.outbox_counts(case_ids, "case_escalated") == dict.fromkeys(case_ids, 1)

    await until("every case escalated in the read model", breached, 90, pause=0.5)
    await asyncio.sleep(2)  # room for a second firing to show, were there one
    once = dict.fromkeys(case_ids, 1)
    assert stack.event_counts(case_ids, "clock_warning") == once
    assert stack.event_counts(case_ids, "clock_breached") == once
    assert stack.event_counts(case_ids, "escalated") == once
    assert stack.outbox_counts(case_ids, "deadline_warning") == once
    assert stack.outbox_counts(case_ids, "deadline_breached") == once
    assert stack.outbox_counts(case_ids, "case_escalated") == once
    rows = stack.query("SELECT case_id, breached, status FROM clocks WHERE case_id IN :ids "
                       "AND name = 'emergency_response'", ids=case_ids)
    assert sorted((r.case_id, bool(r.breached)) for r in rows) == sorted((c, True) for c in case_ids)
    assert {r.stage for r in stack.case_rows(case_ids)} == {"escalated"}
    # Each breach was recorded after the worker came back, against the due time it missed.
    for event in stack.query("SELECT case_id, at FROM case_events WHERE case_id IN :ids AND type = 'clock_breached'",
                             ids=case_ids):
        assert datetime.fromisoformat(event.at).replace(tzinfo=UTC) >= back_at
