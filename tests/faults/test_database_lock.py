"""The database write-locked for longer than the API waits for it: intake answers 503 with
Retry-After, and the retry with the same Idempotency-Key, once the lock is gone, makes one case."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from tests.faults.conftest import FaultStack, assert_allowed, intake_body, new_key, until

pytestmark = pytest.mark.faults

BUSY_TIMEOUT_SECONDS = 30  # disputeflow.db.engine: PRAGMA busy_timeout, how long a writer waits for the lock


async def test_intake_while_the_database_is_write_locked(stack: FaultStack) -> None:
    body, key = intake_body(), new_key()
    case_id_before, action_key = await stack.open_case(), new_key()
    action_url = f"/cases/{case_id_before}/actions/send_to_mediation"
    # Another writer holds the write lock, as a long transaction elsewhere would, until the API gave up.
    holder = sqlite3.connect(stack.settings.data_dir / "disputeflow.db", isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        # Meanwhile an action: the case takes it up, but cannot write it to the read model.
        acting = asyncio.create_task(stack.http.post(action_url, json={}, headers=stack.auth(key=action_key)))
        locked = await stack.http.post("/cases", json=body, headers=stack.auth(key=key),
                                       timeout=BUSY_TIMEOUT_SECONDS + 30)
        waited = time.monotonic() - began
        acted = await acting
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert assert_allowed(locked) == 503, locked.text
    assert locked.json()["detail"] == "the database is unavailable"
    assert waited >= BUSY_TIMEOUT_SECONDS - 1, waited  # it did wait for the lock before giving up
    assert not stack.query("SELECT case_id FROM cases WHERE description = :d", d=body["description"])

    retried = await stack.http.post("/cases", json=body, headers=stack.auth(key=key))
    assert retried.status_code == 201, retried.text  # created now: the locked attempt left nothing behind
    case_id = retried.json()["case_id"]
    again = await stack.http.post("/cases", json=body, headers=stack.auth(key=key))
    assert again.status_code == 200 and again.json()["case_id"] == case_id, again.text

    # The action taken up during the lock: accepted, not finished (it could not be written); once
    # the lock is gone the same key answers with its result, applied once.
    assert assert_allowed(acted) == 202, acted.text

    async def action_done() -> bool:
        response = await stack.http.post(action_url, json={}, headers=stack.auth(key=action_key))
        return assert_allowed(response) == 200 and response.json()["stage"] == "mediation"

    await until("the action's result", action_done, 90, pause=1)
    assert stack.event_counts([case_id_before], "sent_to_mediation") == {case_id_before: 1}

    await until("the case in the read model", lambda: stack.case_rows([case_id]), 30)
    assert [r.case_id for r in stack.query("SELECT case_id FROM cases WHERE description = :d",
                                           d=body["description"])] == [case_id]
