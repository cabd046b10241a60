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
    assert too_big.status_code == 409 and "at most 20000" in too_big.json()["detail"], too_big.text
    # what JSON Schema cannot say is a business rule with its reason (409), never a bare 422
    lopsided = await stack.http.post("/supervision/forecast", json=body | {
        "outcomes": {"sessions": {"agreement": 0.9, "partial": 0.9, "no_agreement": 0, "party_absent": 0}}},
        headers=stack.auth(SUPERVISOR))
    assert lopsided.status_code == 409 and "add up to 1.800, not 1" in lopsided.json()["detail"], lopsided.text
    # and what it can say, it says: levels and years outside the range are refused by the schema
    schema = (await stack.http.get("/openapi.json")).json()["components"]["schemas"]
    assert schema["Sweep"]["properties"]["levels"]["items"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert schema["ForecastSpec"]["properties"]["start"]["pattern"].startswith("^2[0-9]{3}-")
    for wrong in ({"sweep": {"levels": [0, 3]}}, {"start": "1999-12-31"}, {"start": "20270301"}):
        refused = await stack.http.post("/supervision/forecast", json=body | wrong, headers=stack.auth(SUPERVISOR))
        assert refused.status_code == 422, (wrong, refused.text)
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
