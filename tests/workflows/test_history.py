"""Fetching, exporting, reading and replaying live cases: on the time-skipping server, and on the dev
server where visibility (listing every case) and the `temporal` CLI's own export are available."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from disputeflow import cli
from disputeflow.db.audit import GENESIS_HASH, chain_hash, compare_with_source, entries_for_case, verify_chain
from disputeflow.db.engine import create_schema, make_engine
from disputeflow.db.models import AuditEntry
from disputeflow.history import (
    projected_events,
    CaseNotFound,
    export_history_json,
    fetch_case_history,
    replay_all,
    replay_case,
    timeline,
)
from disputeflow.settings import Settings, get_settings
from disputeflow.temporal import SEARCH_ATTRIBUTES
from tests.conftest import free_port, installed_binary
from tests.test_audit_chain import as_attacker
from tests.workflows.conftest import OPERATOR, CaseDriver, mediator, running_driver


@pytest.fixture
def cli_against(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Point the CLI's settings at a test server; run it in a thread, as it runs its own event loop."""

    async def run(env: WorkflowEnvironment, *argv: str) -> int:
        monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
        get_settings.cache_clear()
        return await asyncio.to_thread(cli.main, list(argv))

    yield run
    get_settings.cache_clear()


async def test_fetch_export_timeline_and_replay_a_live_case(
    driver: CaseDriver, cli_against, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = await driver.open()
    await driver.act(handle, OPERATOR, {"type": "refer", "body": "court", "organisation": "历下区人民法院"})
    await driver.act(handle, OPERATOR, {"type": "record_referral_outcome", "accepted": True})
    # Every case ends before the test does: a case left open would hold up the shared server's
    # time skipping once a later test advances time past its timers.
    case_id = (await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 4})).case_id

    [run] = await fetch_case_history(driver.env.client, case_id)
    assert run.workflow_id == handle.id and run.run_id == (await handle.describe()).run_id
    entries = timeline([run])
    actions = [e for e in entries if e.kind == "action"]
    assert [(e.actor.user_id, e.data["command"]["type"], e.data["outcome"]) for e in actions] == [
        ("op-1", "refer", "completed"), ("op-1", "record_referral_outcome", "completed"),
        ("op-1", "record_return_visit", "completed")]
    assert entries[-1].kind == "workflow_completed" and entries[-1].data["final_outcome"] == "referred_accepted"
    assert (await replay_case(driver.env.client, case_id)).ok

    assert await cli_against(driver.env, "history", case_id) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(export_history_json(run))
    out = tmp_path / "case.json"
    assert await cli_against(driver.env, "history", case_id, "--out", str(out)) == 0
    assert json.loads(out.read_text()) == json.loads(export_history_json(run))
    assert re.search(r"wrote .*case\.json: run 1 of 1 .*sha256 [0-9a-f]{64}", capsys.readouterr().out)
    assert await cli_against(driver.env, "replay", case_id) == 0
    assert "1 replayed, 0 diverged" in capsys.readouterr().out
    assert await cli_against(driver.env, "timeline", case_id) == 0
    assert "op-1 (operator) referred the case to 历下区人民法院 (court)" in capsys.readouterr().out


async def test_what_cannot_be_checked_exits_2(driver: CaseDriver, cli_against, capsys) -> None:
    with pytest.raises(CaseNotFound):
        await fetch_case_history(driver.env.client, "no-such-case")
    assert await cli_against(driver.env, "replay", "no-such-case") == 2
    assert await cli_against(driver.env, "history", "no-such-case") == 2
    assert "no case 'no-such-case'" in capsys.readouterr().out
    # the time-skipping server has no visibility: it cannot list the cases to replay them all
    assert await cli_against(driver.env, "replay", "--all") == 2
    assert "Temporal refused the request" in capsys.readouterr().out


async def test_a_case_that_continued_as_new_is_fetched_run_by_run(
    time_env: WorkflowEnvironment, sqlite_engine: Engine, early_continue_as_new_policy: Path
) -> None:
    settings = Settings(policy_file=early_continue_as_new_policy)
    async with running_driver(time_env, sqlite_engine, settings) as driver:
        handle = await driver.open()
        view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
        for _ in range(12):
            view = await driver.act(handle, mediator(view.mediator.id),
                                    {"type": "record_mediation_session", "outcome": "partial"})
        await driver.act(handle, OPERATOR, {"type": "withdraw", "reason": "test over"})
        runs = await fetch_case_history(time_env.client, view.case_id)

    assert len(runs) >= 2
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        started = later.events[0].workflow_execution_started_event_attributes
        assert started.continued_execution_run_id == earlier.run_id
    entries = timeline(runs)
    assert [e.run for e in entries] == sorted(e.run for e in entries)
    assert {e.run for e in entries} == set(range(1, len(runs) + 1))
    assert [e.kind for e in entries if e.kind in ("continued_as_new", "run_continued")] == \
        ["continued_as_new", "run_continued"] * (len(runs) - 1)
    assert entries[-1].kind == "workflow_completed" and entries[-1].run == len(runs)
    sessions = [e for e in entries if e.kind == "action" and e.data["command"]["type"] == "record_mediation_session"]
    assert len(sessions) == 12 and {e.run for e in sessions} == set(range(1, len(runs) + 1))
    seqs = [e.data["seq"] for e in entries if e.kind == "case_event"]
    assert seqs == list(range(1, len(seqs) + 1)), "each domain event once, across runs"
    report = await replay_case(time_env.client, view.case_id)
    assert report.ok and [r.run_id for r in report.results] == [r.run_id for r in runs]


async def test_on_the_dev_server_every_case_replays_and_the_export_matches_the_cli(cli_against, capsys) -> None:
    """The real server: visibility lists every case, and `temporal workflow show` is there to compare."""
    temporal = installed_binary("temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, port=free_port(), ui=False,
        data_converter=pydantic_data_converter, search_attributes=SEARCH_ATTRIBUTES,
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{folder}/read.db")
            create_schema(engine)
            async with running_driver(env, engine, Settings()) as driver:
                handles = [await driver.open() for _ in range(2)]
                await driver.act(handles[0], OPERATOR, {"type": "answer_consultation", "answer": "可申请劳动仲裁"})
            engine.dispose()
        case_ids = [h.id.removeprefix("case-") for h in handles]

        async def listed() -> int:
            return len([w async for w in env.client.list_workflows('WorkflowType = "CaseWorkflow"')])

        for _ in range(100):  # visibility catches up with the starts a moment later
            if await listed() == 2:
                break
            await asyncio.sleep(0.05)
        seen = []
        report = await replay_all(env.client, on_progress=lambda done, total, result: seen.append((done, total)))
        assert report.ok and sorted(r.case_id for r in report.results) == sorted(case_ids)
        assert seen == [(1, 2), (2, 2)]

        [run] = await fetch_case_history(env.client, case_ids[0])
        shown = subprocess.run(
            [temporal, "workflow", "show", "--address", env.client.service_client.config.target_host,
             "--workflow-id", handles[0].id, "--output", "json"],
            capture_output=True, text=True, check=True,
        ).stdout
        assert json.loads(export_history_json(run)) == json.loads(shown)
        timers = [e for e in timeline([run]) if e.kind == "timer_started"]
        assert timers and all(e.data["alarms"] for e in timers), "each timer matched to its clock on a real server"

        assert await cli_against(env, "replay", "--all") == 0
        assert "2 replayed, 0 diverged" in capsys.readouterr().out
    finally:
        await env.shutdown()


async def test_audit_log_held_against_the_workflow_history(
    driver: CaseDriver, cli_against, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    runs = await fetch_case_history(driver.env.client, view.case_id)
    source = projected_events(runs)
    assert [e["seq"] for e in source] == [e.seq for e in view.timeline]
    with Session(driver.engine) as session:
        comparison = compare_with_source(view.case_id, entries_for_case(session, view.case_id), source)
    assert comparison.ok and comparison.entries_in_log == len(view.timeline)

    # An attacker rewrites who was assigned, then recomputes every later hash: the chain is fooled...
    assigned = next(e.seq for e in view.timeline if e.type == "mediator_assigned")
    with Session(driver.engine) as session:
        rows = list(session.exec(select(AuditEntry).order_by(AuditEntry.id)))
    prev = GENESIS_HASH
    for row in rows:
        canonical = row.canonical
        if row.case_id == view.case_id and row.event_seq == assigned:
            canonical = canonical.replace(view.mediator.id, "med-370102-03")
        digest = chain_hash(prev, canonical)
        as_attacker(driver.engine, "UPDATE audit_log SET canonical = :c, prev_hash = :p, hash = :h WHERE id = :i",
                    c=canonical, p=prev, h=digest, i=row.id)
        prev = digest
    with Session(driver.engine) as session:
        assert verify_chain(session).ok
        comparison = compare_with_source(view.case_id, entries_for_case(session, view.case_id), source)
    # ...but not the comparison with Temporal's own record of what the workflow did
    assert [d.event_seq for d in comparison.discrepancies] == [assigned]
    assert "differs from the event the workflow recorded" in comparison.discrepancies[0].problem

    monkeypatch.setenv("DATABASE_URL", driver.engine.url.render_as_string(hide_password=False))
    assert await cli_against(driver.env, "verify-audit", "--case", view.case_id) == 1
    assert f"case {view.case_id}, event {assigned}:" in capsys.readouterr().out


def test_comparison_names_missing_and_invented_entries() -> None:
    entry = AuditEntry(id=1, case_id="C", event_seq=2, event_type="x",
                       canonical='{"payload":{"seq":2,"type":"x"}}', prev_hash="0", hash="1",
                       recorded_at=datetime.now(UTC))
    comparison = compare_with_source("C", [entry], [{"seq": 1, "type": "case_registered"}])
    assert [(d.event_seq, d.problem) for d in comparison.discrepancies] == [
        (1, "in the workflow history but missing from the audit log"),
        (2, "in the audit log but not in the workflow history"),
    ]
