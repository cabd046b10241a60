"""Supervisors: breaches (after real timers fire on the time-skipping server), deadlines at risk,
compliance as JSON and CSV, all within the supervisor's region."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from disputeflow.domain.calendar import SHANGHAI
from tests.api.conftest import OTHER_SUPERVISOR, SUPERVISOR, Stack


async def _get(stack: Stack, path: str, who=SUPERVISOR, **params):
    return await stack.http.get(f"/supervision/{path}", params=params, headers=stack.auth(who))


async def test_a_missed_emergency_deadline_shows_as_a_breach(stack: Stack) -> None:
    case = await stack.open_case(urgency="emergency", dispute_type="neighbours",
                                 description="邻居扬言动手，老人独居")
    await stack.env.sleep(timedelta(hours=2))  # the 1-hour emergency clock fires
    await stack.projected(case["case_id"], lambda r: r.breached)

    response = await _get(stack, "breaches", include_ended="true", clock="emergency_response", limit=500)
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["items"] if r["case_id"] == case["case_id"]]
    assert len(rows) == 1 and rows[0]["breached"] and rows[0]["urgency"] == "emergency"
    # it escalated, so the case is listed as breached and waits for a supervisor
    listed = (await stack.http.get("/cases", params={"breached": "true", "stage": "escalated", "limit": 100},
                                   headers=stack.auth(SUPERVISOR))).json()
    assert case["case_id"] in {c["case_id"] for c in listed["items"]}
    elsewhere = (await _get(stack, "breaches", OTHER_SUPERVISOR, include_ended="true")).json()
    assert case["case_id"] not in {r["case_id"] for r in elsewhere["items"]}
    filtered = (await _get(stack, "breaches", include_ended="true", stage="mediation")).json()
    assert case["case_id"] not in {r["case_id"] for r in filtered["items"]}


async def test_deadlines_at_risk(stack: Stack) -> None:
    case = await stack.open_case()
    rows = (await _get(stack, "at-risk", within_hours=24 * 14, limit=500)).json()["items"]
    mine = [r for r in rows if r["case_id"] == case["case_id"]]
    assert [r["name"] for r in mine] == ["triage_response"] and not mine[0]["breached"]
    assert [r["due_at"] for r in rows] == sorted(r["due_at"] for r in rows)
    nothing_soon = (await _get(stack, "at-risk", within_hours=0, limit=500)).json()["items"]
    assert case["case_id"] not in {r["case_id"] for r in nothing_soon}


async def test_compliance_json_and_csv(stack: Stack) -> None:
    case = await stack.open_case()
    day = datetime.fromisoformat(case["opened_at"]).astimezone(SHANGHAI).date()
    params = {"start": day.isoformat(), "end": day.isoformat(), "period": "day", "group_by": 4}
    figures = (await _get(stack, "compliance", **params)).json()
    assert figures["region"] == "3701" and figures["period"] == "day"
    triage = next(r for r in figures["rows"] if r["clock"] == "triage_response")
    assert triage["region_code"] == "3701" and triage["period"] == day.isoformat() and triage["started"] >= 1

    response = await _get(stack, "compliance.csv", **params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="compliance-3701-{day:%Y%m%d}-{day:%Y%m%d}.csv"')
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["clock"] for r in table} == {r["clock"] for r in figures["rows"]}
    assert next(r for r in table if r["clock"] == "triage_response")["started"] == str(triage["started"])

    narrower = (await _get(stack, "compliance", region="370102", **{k: v for k, v in params.items()
                                                                     if k != "group_by"})).json()
    assert narrower["region"] == "370102"
    assert (await _get(stack, "compliance", region="1101")).status_code == 403
    elsewhere = (await _get(stack, "compliance", OTHER_SUPERVISOR, **params)).json()
    assert all(r["region_code"].startswith("1101") for r in elsewhere["rows"])


async def test_bad_report_parameters_are_named(stack: Stack) -> None:
    for path, params, loc in (
        ("compliance", {"period": "year"}, ["query", "period"]),
        ("compliance.csv", {"group_by": 3}, ["query", "group_by"]),
        ("compliance", {"start": "1999-12-31"}, ["query", "start"]),
        ("compliance", {"start": "2026-11-01T00:00:00"}, ["query", "start"]),  # a day, as the pattern says
        ("compliance.csv", {"end": "1767225600"}, ["query", "end"]),
        ("at-risk", {"within_hours": "inf"}, ["query", "within_hours"]),
        ("at-risk", {"within_hours": "nan"}, ["query", "within_hours"]),
        ("at-risk", {"within_hours": -1}, ["query", "within_hours"]),
        ("breaches", {"limit": 10 ** 30}, ["query", "limit"]),
        ("breaches", {"offset": -1}, ["query", "offset"]),
        ("breaches", {"stage": "purgatory"}, ["query", "stage"]),
        ("breaches", {"region": "37010"}, ["query", "region"]),
    ):
        response = await _get(stack, path, **params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["detail"][0]["loc"] == loc
    # Two valid days that name no range: a refusal with its reason, not malformed input.
    for path in ("compliance", "compliance.csv"):
        response = await _get(stack, path, start="2026-11-02", end="2026-11-01")
        assert response.status_code == 409 and "before start" in response.json()["detail"], response.text
