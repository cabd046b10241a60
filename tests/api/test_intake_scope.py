"""Idempotency-Keys are per user at the API too: the same key from another user is another key."""

from __future__ import annotations

import uuid

from tests.api.conftest import OPERATOR, SUPERVISOR, Stack, intake_body


async def test_the_same_key_from_another_user_registers_another_case(stack: Stack) -> None:
    key = f"intake-{uuid.uuid4()}"
    mine = await stack.http.post("/cases", json=intake_body(), headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert mine.status_code == 201, mine.text
    theirs = await stack.http.post("/cases", json=intake_body(), headers=stack.auth(SUPERVISOR) | {
        "Idempotency-Key": key})
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["case_id"] != mine.json()["case_id"]
