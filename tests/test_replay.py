"""Committed histories replay under today's code; a change that alters the workflow's commands does not.

`tests/histories/*.json` are recorded by `DISPUTEFLOW_RECORD_HISTORIES=1 pytest tests/workflows/test_paths.py`
(one per lifecycle path) and kept forever: they stand for the cases already running in production,
which every new version of the workflow must still replay. This is the CI gate of the versioning
procedure in docs/audit.md.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import UnsandboxedWorkflowRunner

from disputeflow import cli
from disputeflow.contracts import CaseInput, CaseResult
from disputeflow.history import (
    WARM_UP_HISTORY,
    explain_replay_failure,
    export_history_json,
    load_history_files,
    replay_histories,
    timeline,
    warm_up,
)
from workflows.legacy.case import CaseWorkflow

from tests.conftest import HISTORIES, RECORDING_DIR, V2_HISTORY_DIRS, V2_HISTORY_FILES
from tests.conftest import LEGACY_HISTORY_DIR as LEGACY_HISTORIES

WORKFLOW_TESTS = sorted((Path(__file__).parent / "workflows").glob("test_*.py"))
HISTORY_FILES = V2_HISTORY_FILES
LEGACY_FILES = sorted(LEGACY_HISTORIES.glob("*.json"))
ALL_FILES = HISTORY_FILES + LEGACY_FILES


def recorded_path_names() -> list[str]:
    """The names the workflow tests (test_paths.py above all) save their paths' histories under."""
    pattern = r"save_history\(\s*\w+\s*,\s*[\"'](\w+)[\"']\s*\)"
    return [name for module in WORKFLOW_TESTS for name in re.findall(pattern, module.read_text(encoding="utf-8"))]


def history(name: str, directory: Path = HISTORIES) -> WorkflowHistory:
    return load_history_files(directory)[directory / f"{name}.json"]


def test_every_recorded_path_has_a_committed_history() -> None:
    """Under today's code (the folder of the latest patch) and as first recorded."""
    names = recorded_path_names()
    assert names, "test_paths.py saves no histories"
    missing = [n for n in names if not (RECORDING_DIR / f"{n}.json").exists()]
    assert not missing, f"record them: DISPUTEFLOW_RECORD_HISTORIES=1 pytest tests/workflows/test_paths.py ({missing})"


def test_both_workflow_types_have_committed_histories() -> None:
    assert all(len(list(d.glob("*.json"))) >= 15 for d in V2_HISTORY_DIRS) and len(LEGACY_FILES) >= 16


@pytest.mark.parametrize("path", ALL_FILES, ids=[str(p.relative_to(HISTORIES).with_suffix("")) for p in ALL_FILES])
async def test_committed_history_replays_under_todays_code(path: Path) -> None:
    report = await replay_histories([load_history_files(path.parent)[path]])
    assert report.ok, report.diverged


async def test_the_warm_up_case_is_a_current_history_that_replays() -> None:
    started = json.loads(WARM_UP_HISTORY.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
    assert started["workflowType"]["name"] == "CaseWorkflowV2"
    assert await warm_up()


def test_histories_name_their_case_whatever_the_file_is_called() -> None:
    loaded_files = {}
    for directory in (*V2_HISTORY_DIRS, LEGACY_HISTORIES):
        loaded_files |= load_history_files(directory)
    for path, loaded in loaded_files.items():
        case_id = json.loads(base64.b64decode(
            json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
        ))["case_id"]
        assert loaded.workflow_id == f"case-{case_id}"


def test_export_is_the_history_json_and_loads_back() -> None:
    original = history("referral")
    exported = export_history_json(original)
    assert json.loads(exported) == json.loads((HISTORIES / "referral.json").read_text())
    assert WorkflowHistory.from_json(original.workflow_id, exported).events == original.events


# -- A change to the workflow's commands ---------------------------------------------------------
# Subclasses under the real workflow's name, replayed unsandboxed: the sandbox would re-import this
# test module (and pytest with it) inside every replay.


@workflow.defn(name="CaseWorkflow")
class WaitsBeforeOpening(CaseWorkflow):
    """An unpatched change: a timer before the case's first activity."""

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


@workflow.defn(name="CaseWorkflow")
class WaitsBeforeOpeningWhenPatched(CaseWorkflow):
    """The same change behind `workflow.patched`: old histories take the old path."""

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        if workflow.patched("wait-before-opening"):
            await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


async def test_an_unpatched_change_diverges_at_the_event_it_contradicts() -> None:
    recorded = history("mediation_agreement", LEGACY_HISTORIES)
    pin_policy = next(e.event_id for e in recorded.events if e.HasField("activity_task_scheduled_event_attributes"))
    report = await replay_histories([recorded], workflows=[WaitsBeforeOpening],
                                    workflow_runner=UnsandboxedWorkflowRunner())
    [result] = report.results
    assert not result.ok and result.event_id == pin_policy  # where the code now starts a timer instead
    assert "Nondeterminism" in result.reason and "ActivityTaskScheduled" in result.reason
    assert result.case_id and result.workflow_id == f"case-{result.case_id}"


async def test_the_same_change_behind_a_patch_replays() -> None:
    report = await replay_histories(list(load_history_files(LEGACY_HISTORIES).values()),
                                    workflows=[WaitsBeforeOpeningWhenPatched],
                                    workflow_runner=UnsandboxedWorkflowRunner())
    assert report.ok, report.diverged


def tampered(name: str, *, rename_activity: str) -> dict:
    """A committed history whose first `project_case` activity was renamed."""
    document = copy.deepcopy(json.loads((HISTORIES / f"{name}.json").read_text()))
    for event in document["events"]:
        attributes = event.get("activityTaskScheduledEventAttributes")
        if attributes and attributes["activityType"]["name"] == "project_case":
            attributes["activityType"]["name"] = rename_activity
            document["tampered_event_id"] = int(event["eventId"])
            return document
    raise AssertionError("no project_case activity")


async def test_a_divergence_whose_message_names_no_event_is_located_by_bisection() -> None:
    document = tampered("referral", rename_activity="erase_case")
    report = await replay_histories([WorkflowHistory.from_json("case-x", document)])
    [result] = report.results
    assert not result.ok and result.event_id == document["tampered_event_id"]
    assert "'erase_case' does not match activity type of activity command 'project_case'" in result.reason


def test_replay_failure_messages_are_unwrapped_and_name_their_event() -> None:
    wrapped = ('Workflow activation completion failed: Failure { failure: Some(Failure { message: "[TMPRL1100] '
               'Nondeterminism error: During event handling, this event had an initial command ID but we could not '
               'find a matching command for it: HistoryEvent { event_id: 38, event_time: Some(Timestamp { seconds: 1, '
               'nanos: 0 }), event_type: WorkflowTaskStarted, attributes: Some(X { identity: \\"w@vm\\" }) }", '
               'source: "", cause: None }), force_cause: NonDeterministicError }')
    reason, event_id = explain_replay_failure(RuntimeError(wrapped))
    assert event_id == 38
    assert reason == ("[TMPRL1100] Nondeterminism error: During event handling, this event had an initial command "
                      "ID but we could not find a matching command for it: HistoryEvent(id: 38, WorkflowTaskStarted)")
    assert explain_replay_failure(RuntimeError("something else")) == ("something else", None)


# -- The auditor's timeline ----------------------------------------------------------------------


def test_timeline_of_a_full_case_says_who_did_what_in_order() -> None:
    entries = timeline([history("mediation_agreement")])
    assert [e.event_id for e in entries] == sorted(e.event_id for e in entries)
    assert entries[0].kind == "case_opened" and entries[0].data["region_code"] == "370102"
    assert entries[-1].kind == "workflow_completed"
    assert entries[-1].data["final_outcome"] == "mediated_agreement_performed"
    pinned = next(e for e in entries if e.kind == "policy_pinned")
    assert pinned.data["version"] == "2026.1" and pinned.data["fingerprint"]

    actions = [e for e in entries if e.kind == "action"]
    assert [(e.actor.role.value, e.data["command"]["type"]) for e in actions] == [
        ("operator", "send_to_mediation"),
        ("mediator", "record_mediation_session"),
        ("mediator", "record_mediation_session"),
        ("mediator", "record_judicial_confirmation"),
        ("mediator", "record_performance"),
        ("operator", "record_return_visit"),
        ("supervisor", "complete_review"),
    ]
    assert all(e.data["outcome"] == "completed" and e.data["request_id"] for e in actions)
    assert actions[0].summary == "op-1 (operator) sent the case to mediation"
    assert actions[-1].data["stage"] == "closed"

    events = [e.data["type"] for e in entries if e.kind == "case_event"]
    assert events[:2] == ["case_registered", "clock_started"]
    assert events.index("mediator_assigned") < events.index("agreement_reached") < events.index("case_closed")
    assert [e.data["seq"] for e in entries if e.kind == "case_event"] == list(range(1, len(events) + 1))

    timers = [e for e in entries if e.kind.startswith("timer_")]
    assert timers and all(e.data["alarms"] for e in timers), "every timer serves a known clock's alarm"


def test_timeline_names_the_clock_each_timer_served() -> None:
    entries = timeline([history("mediation_breach")])
    fired = [(a["clock"], a["alarm"], a["fraction"]) for e in entries if e.kind == "timer_fired" for a in e.data["alarms"]]
    assert fired[:3] == [("mediation_conclusion", "warning", 0.5), ("mediation_conclusion", "warning", 0.8),
                         ("mediation_conclusion", "breach", None)]
    breach = next(e for e in entries if e.kind == "case_event" and e.data["type"] == "clock_breached")
    fired_breach = next(e for e in entries if e.kind == "timer_fired" and e.data["alarms"][0]["alarm"] == "breach")
    assert breach.event_id > fired_breach.event_id and breach.actor is None
    assert "escalated by the system" in next(e.summary for e in entries if e.data.get("type") == "escalated")


def test_timeline_sentences_quote_the_action() -> None:
    summaries = [e.summary for e in timeline([history("referral")]) if e.kind == "action"]
    assert "op-1 (operator) referred the case to 历下区人民法院 (court)" in summaries


# -- The command line ----------------------------------------------------------------------------


def test_cli_replays_the_committed_histories(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--dir", str(HISTORIES)]) == 0
    out = capsys.readouterr().out
    assert f"{len(list(HISTORIES.glob('*.json')))} replayed, 0 diverged" in out
    assert "[1/" in out and "referral.json: case " in out


def test_cli_names_the_file_and_event_that_diverge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in HISTORY_FILES[:2]:
        (tmp_path / path.name).write_text(path.read_text())
    document = tampered("referral", rename_activity="erase_case")
    (tmp_path / "referral-tampered.json").write_text(json.dumps(document))
    assert cli.main(["replay", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "3 replayed, 1 diverged" in out
    assert "referral-tampered.json: case " in out
    assert f"DIVERGED at event {document['tampered_event_id']}: " in out


def test_cli_without_histories_checks_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--dir", str(tmp_path)]) == 2
    assert "no history files" in capsys.readouterr().out
