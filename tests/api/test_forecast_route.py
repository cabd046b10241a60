"""`POST /supervision/forecast`: a job that runs a small forecast and answers its figures."""

from __future__ import annotations

import asyncio

from tests.api.conftest import OPERATOR, SUPERVISOR, Stack


async def test_a_supervisor_starts_a_forecast_and_reads_its_result(stack: Stack) -> None:
    body = {"region_code": "370102", "start": "2027-03-01", "weeks": 1, "runs": 1,
            "arrivals": [{"category": "consultation", "per_week": 4}]}
    assert (await stack.http.post("/supervision/forecast", json=body, headers=stack.auth(OPERATOR))).status_code == 403
    outside = await stack.http.post("/supervision/forecast", json=body | {"region_code": "110105"},
                                    headers=stack.auth(SUPERVISOR))
    assert outside.status_code == 403
    too_big = await stack.http.post("/supervision/forecast", json=body | {
        "weeks": 26, "runs": 20, "arrivals": [{"category": "dispute", "per_week": 1000}]}, headers=stack.auth(SUPERVISOR))
    assert too_big.status_code == 422
    started = await stack.http.post("/supervision/forecast", json=body, headers=stack.auth(SUPERVISOR))
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "running" and job["cases"] == 4
    for _ in range(600):
        job = (await stack.http.get(f"/supervision/forecast/{job['job_id']}", headers=stack.auth(SUPERVISOR))).json()
        if job["status"] != "running":
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "done", job.get("detail")
    (level,) = job["result"]["levels"]
    triage = next(r for r in level["clocks"] if r["clock"] == "triage_response")
    assert triage["started"] >= 1 and triage["compliance"] == 1.0
    # nobody else reads it
    other = await stack.http.get(f"/supervision/forecast/{job['job_id']}",
                                 headers=stack.auth(("sup-2", "supervisor", "3701")))
    assert other.status_code == 404
