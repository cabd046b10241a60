"""A case's Temporal history, for auditors: fetch every run, export it, read it, replay it.

Temporal keeps every case's event history: each action people took (an `act` update, with its
request and its outcome), each timer the workflow set for a deadline, each activity it ran and
what the activity was given and returned. Auditors ask two questions of it:

- *What happened?* `timeline` translates the history into entries a person can read: who asked for
  what and whether it was done, which clock each timer served, and the domain events the workflow
  projected (decoded from the `project_case` activity inputs the history carries).
- *Does today's code still agree with it?* `replay_*` re-runs the workflow code against the
  recorded events with Temporal's `Replayer`. A divergence means the code now issues different
  commands than it did when the case ran: such a case would fail its next workflow task in
  production, so a divergence is a bug to fix (usually a missing `workflow.patched`), not a
  property of the case.

Replay is not tamper evidence: Temporal compares the commands the code issues with the events'
kinds and identities, not every field (a timer's duration, an activity's input), so an edited
history file can still replay. The hash chain of the audit log (`disputeflow.db.audit`,
`disputeflow verify-audit`) is what proves the recorded trail was not altered; the history to
trust is the one fetched from the server, and an exported file is pinned by the SHA-256 that
`disputeflow history --out` prints.

A long case continues as new: its history is several runs, first run first. Event ids restart at
1 in each run, so a timeline entry carries its run number with its event id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, WorkflowRunner

import worker
from disputeflow.codec import ERASED_MARK as _ERASED_MARK
from disputeflow.codec import EncryptionCodec, PayloadDecryptionError, case_of, is_encrypted, is_erased_marker
from disputeflow.contracts import CaseInput, workflow_id_for
from disputeflow.domain.actions import COMMAND_TYPES, Actor
from disputeflow.domain.process.command import words
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.case import CaseEvent
from disputeflow.domain.clocks import Clock, ClockStatus

CASE_WORKFLOW_QUERY = " OR ".join(f'WorkflowType = "{workflow._Definition.must_from_class(w).name}"'
                                  for w in worker.CASE_WORKFLOWS)
_PAYLOADS = pydantic_data_converter.payload_converter


class _ReplayOnlyCodec(EncryptionCodec):
    """No keys: decodes payloads recorded before encryption (unmarked, passed through) and names the
    missing key for an encrypted one. Encoding passes through too: a replayer's commands are
    compared with the history, never sent. Never give it to a client or a worker."""

    def encode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


_KEYLESS_CONVERTER = dataclasses.replace(pydantic_data_converter, payload_codec=_ReplayOnlyCodec([]))


# -- Fetching ------------------------------------------------------------------------------------


class HistoryError(Exception):
    """A case's history cannot be read as asked."""


class CaseNotFound(HistoryError):
    """Temporal has no workflow for this case id (never opened, or purged after retention)."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id!r}: Temporal has no workflow {workflow_id_for(case_id)!r}")
        self.case_id = case_id


class HistoryUndecryptable(HistoryError):
    """A payload of the history carries the encryption marker but the configured keys cannot decrypt it."""


class CaseErased(HistoryError):
    """The case was erased: its data key is destroyed and its history can no longer be decrypted."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"case {case_id} was erased: its data key is destroyed and its history can no longer "
                         "be decrypted")
        self.case_id = case_id


class HistoryIncomplete(HistoryError):
    """An earlier run of a case is gone (the namespace's retention removed it): the history has a hole."""


async def fetch_case_history(client: Client, case_id: str, *, decode: bool = True) -> list[WorkflowHistory]:
    """Every run of the case's workflow, first run first.

    Temporal stores the payloads encrypted (`disputeflow.codec`). With `decode` (the default, for
    the timeline and the audit comparison) they are decrypted with the client's codec; with
    `decode=False` the runs are as the server keeps them: what an export hands over (read in the
    Web UI through the codec endpoint) and what the replayer, which decrypts by itself, takes.

    Walks back from the current run through `continued_execution_run_id`, which every server
    (and the time-skipping test server, which has no visibility queries) records on a continued
    run's first event; listing runs by workflow id would need visibility, which lags and may be off.
    """
    workflow_id = workflow_id_for(case_id)
    try:  # the current run, with no run id: one call, no describe first
        latest = await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(case_id) from None
        raise
    runs: list[WorkflowHistory] = [latest]
    run_id = _previous_run(latest)
    while run_id:
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise HistoryIncomplete(
                    f"case {case_id}: run {run_id} is no longer on the server; "
                    f"{len(runs)} later run(s) remain"
                ) from None
            raise
        runs.append(history)
        run_id = _previous_run(history)
    runs.reverse()
    codec = client.data_converter.payload_codec
    if decode and codec is not None:
        runs = [await decode_history(run, codec) for run in runs]
    return runs


def _previous_run(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id


def _messages_in(message: Message, kind: type[Message]) -> list[Any]:
    """Every `kind` message inside a proto message, at any depth (for payloads: inputs, results,
    failures' details, headers, search attributes, memo). A `kind` inside a `kind` is not searched."""
    found: list[Any] = []
    pending: list[Message] = [message]
    while pending:  # bounded: a proto message is a finite tree
        current = pending.pop()
        for field, value in current.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                items = [item for item in value.values() if isinstance(item, Message)]
            elif isinstance(value, Message):
                items = [value]
            else:
                items = list(value)
            for item in items:
                (found if isinstance(item, kind) else pending).append(item)
    return found


def _payloads_in(message: Message) -> list[Payload]:
    return _messages_in(message, Payload)


def _restore_failure_texts(event: HistoryEvent) -> None:
    """Put back the message and stack trace of failures whose text was moved into their (now
    decrypted) `encoded_attributes` payload, as the SDK's failure converter does."""
    pending = _messages_in(event, Failure)
    while pending:  # bounded: each failure's chain of causes is finite
        failure = pending.pop()
        if failure.HasField("cause"):
            pending.append(failure.cause)
        if not failure.HasField("encoded_attributes") or is_encrypted(failure.encoded_attributes):
            continue
        try:
            attributes = _PAYLOADS.from_payloads([failure.encoded_attributes], None)[0]
        except Exception:  # noqa: BLE001 - not the SDK's attributes: leave the failure as it is
            continue
        if isinstance(attributes, dict) and isinstance(attributes.get("message"), str):
            failure.message = attributes["message"]
            failure.stack_trace = str(attributes.get("stack_trace") or "")
            failure.ClearField("encoded_attributes")


async def decode_history(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of `history` with every payload run through `codec.decode` (payloads recorded before
    encryption pass through unchanged). Raises `HistoryError` when a payload does not decrypt."""
    events = []
    for event in history.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        events.append(copy)
    payloads = [payload for event in events for payload in _payloads_in(event) if is_encrypted(payload)]
    try:
        decoded = await codec.decode(payloads) if payloads else []
    except PayloadDecryptionError as error:
        raise HistoryUndecryptable(f"workflow {history.workflow_id}: {error}") from None
    erased = [plain.metadata[_ERASED_MARK].decode() for plain in decoded if is_erased_marker(plain)]
    if erased:  # the timeline, the audit check: nothing to read in an erased case's history
        raise CaseErased(erased[0])
    for payload, plain in zip(payloads, decoded, strict=True):
        payload.CopyFrom(plain)
    for event in events:
        _restore_failure_texts(event)
    return WorkflowHistory(history.workflow_id, events)


# -- Export and import ---------------------------------------------------------------------------


def export_history_json(history: WorkflowHistory) -> str:
    """One run's history as the JSON document `temporal workflow show --output json` prints.

    Both are the proto3 JSON mapping of `temporal.api.history.v1.History` (`{"events": [...]}`,
    camelCase fields, int64 as strings, enums as `EVENT_TYPE_...`, payloads base64), so they parse
    to equal data and each loads with `WorkflowHistory.from_json`, the UI's download included.
    Checked against CLI 1.9.1: the only differences are layout, which JSON does not give meaning
    to: key order (Go sorts map keys such as search attributes and places `eventGroupMarkers`
    before the attributes, Python keeps declaration order) and number spelling (`2` in Go, `2.0`
    here for the float `backoffCoefficient`). The CLI, like this function, shows one run.
    """
    return history.to_json() + "\n"


def load_history_files(directory: Path) -> dict[Path, WorkflowHistory]:
    """Every `*.json` history in `directory` (exported, downloaded from the UI, or committed), by file name.

    The workflow id is taken from the first event (`workflowId`, or the case id in the workflow's
    input), so a file may be named anything; the file name is the last resort.
    """
    histories: dict[Path, WorkflowHistory] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
        except (ValueError, json_format.ParseError) as error:  # bad JSON; JSON that is not a history
            raise HistoryError(f"{path}: not a Temporal history ({error})") from None
        if not history.events or not history.events[0].HasField("workflow_execution_started_event_attributes"):
            raise HistoryError(f"{path}: a history must begin with its workflow's start event")
        histories[path] = dataclasses.replace(history, workflow_id=_workflow_id(history.events, path.stem))
    return histories


def _workflow_id(events: Sequence[HistoryEvent], fallback: str) -> str:
    started = events[0].workflow_execution_started_event_attributes
    if started.workflow_id:  # recent servers record it; the time-skipping server does not
        return started.workflow_id
    case_id = (_raw_or_none(started.input.payloads) or {}).get("case_id")
    return workflow_id_for(case_id) if isinstance(case_id, str) else fallback


def _case_id(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes if history.events else None
    case_input = (_raw_or_none(started.input.payloads) if started else None) or {}
    if isinstance(case_input.get("case_id"), str):
        return case_input["case_id"]
    return history.workflow_id.removeprefix(workflow_id_for(""))


def _raw(payloads: Sequence[Any]) -> Any:
    """The first payload as plain JSON data, whatever today's models say about it; None if absent.

    The history must have been decoded (`fetch_case_history` does it, `decode_history` for files):
    an encrypted payload here is an error, not data to guess at.
    """
    if not payloads:
        return None
    if is_encrypted(payloads[0]):
        raise HistoryError("the history's payloads are encrypted: decode it with the payload codec first "
                           "(fetch_case_history does; decode_history for a file)")
    return _PAYLOADS.from_payloads(list(payloads), None)[0]


def _raw_or_none(payloads: Sequence[Any]) -> Any:
    try:
        return _raw(payloads)
    except HistoryError:
        return None


# -- Timeline ------------------------------------------------------------------------------------


TIMELINE_KINDS = ("case_opened", "run_continued", "policy_pinned", "action", "case_event", "timer_started",
                  "timer_fired", "timer_canceled", "activity_failed", "workflow_task_failed", "continued_as_new",
                  "workflow_completed", "workflow_failed", "workflow_terminated", "workflow_canceled",
                  "workflow_timed_out")


class TimelineEntry(BaseModel):
    """One line of a case's audit timeline, tied to the Temporal event it was read from.

    kind: `case_opened`, `run_continued`, `policy_pinned`, `action` (one per accepted update, with
    its outcome), `case_event` (a domain event the workflow projected), `timer_started`,
    `timer_fired`, `timer_canceled`, `activity_failed`, `workflow_task_failed`, `continued_as_new`,
    `workflow_completed`, `workflow_failed`, `workflow_terminated`, `workflow_canceled`,
    `workflow_timed_out`.
    """

    at: datetime
    run: int = Field(default=1, description="Which workflow run; event ids restart at 1 in each")
    event_id: int
    kind: str
    actor: Actor | None = None  # None: the system (a timer, a rule, Temporal itself)
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)


def timeline(histories: Sequence[WorkflowHistory]) -> list[TimelineEntry]:
    """The case's runs (first run first) as an auditor's timeline, ordered by run and event id.

    Payloads are decoded as plain JSON first and read through today's models only where that
    still works, so an old history remains readable after the models have moved on.
    """
    reader = _TimelineReader()
    for index, history in enumerate(histories, start=1):
        reader.read_run(history, index)
    return reader.entries


def projected_events(histories: Sequence[WorkflowHistory]) -> list[dict[str, Any]]:
    """The domain events the workflow handed to its projection, first run first, each once (JSON form).

    These are what the read model and the audit log copy, taken from Temporal's own record of the
    `project_case` activity inputs: the source an audit log is checked against.
    """
    seen: dict[int, dict[str, Any]] = {}
    for history in histories:
        for event in history.events:
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                continue
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name != "project_case":
                continue
            for case_event in (_raw(attrs.input.payloads) or {}).get("events") or []:
                seen.setdefault(int(case_event["seq"]), case_event)
    return [seen[seq] for seq in sorted(seen)]


class _TimelineReader:
    """Reads runs in order, keeping what later events refer back to (updates, timers, clocks)."""

    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []
        self.clocks: list[Clock] = []  # the case's clocks as last projected: what a timer is for
        self.last_seq = 0  # the last domain event shown; a retried projection repeats events
        self.applied_requests: set[str] = set()
        # per run, since ids restart with each run:
        self.run = 1
        self.activities: dict[int, str] = {}  # scheduled event id -> activity type
        self.actions: dict[str, TimelineEntry] = {}  # update id -> its entry
        self.timers: dict[str, dict[str, Any]] = {}
        # Timers set before the snapshot that shows their clock: a snapshot queued in the
        # background is scheduled after the timer the same change arms (patched workflows).
        self.unmatched_timers: list[tuple[dict[str, Any], TimelineEntry]] = []
        self.task_started_at: datetime | None = None  # workflow.now() of the current workflow task

    def read_run(self, history: WorkflowHistory, index: int) -> None:
        """Hand each event to `_on_<its kind>`; the kinds no auditor needs (workflow tasks
        scheduled and completed, activities started) have no handler."""
        self.run, self.activities, self.actions, self.timers = index, {}, {}, {}
        self.unmatched_timers = []
        for event in history.events:
            attributes = event.WhichOneof("attributes")
            if attributes is None:
                continue
            handler = getattr(self, f"_on_{attributes.removesuffix('_event_attributes')}", None)
            if handler is not None:
                handler(event, getattr(event, attributes), history)

    def _add(self, event: HistoryEvent, kind: str, summary: str, *, at: datetime | None = None,
             actor: Actor | None = None, **data: Any) -> TimelineEntry:
        entry = TimelineEntry(at=at or _time(event), run=self.run, event_id=event.event_id, kind=kind,
                              actor=actor, summary=summary, data=data)
        self.entries.append(entry)
        return entry

    # -- The run's start and end

    def _on_workflow_execution_started(self, event: HistoryEvent, attrs: Any, history: WorkflowHistory) -> None:
        raw = _raw(attrs.input.payloads) or {}
        ids = {"case_id": _case_id(history), "workflow_id": history.workflow_id, "run_id": history.run_id}
        carried = raw.get("carried")
        if attrs.continued_execution_run_id or carried:
            state = _valid(CaseInput, raw)
            if state is not None and state.carried is not None:
                self.run = state.carried.runs + 1  # the workflow counts its runs in the state it carries
                self.clocks = state.carried.clocks
                self.last_seq = max(self.last_seq, state.carried.projected_seq)
            stage = (carried or {}).get("stage", "?")
            self._add(event, "run_continued",
                      f"The case continued in run {self.run} with its state carried over (stage {stage})",
                      previous_run_id=attrs.continued_execution_run_id, stage=stage, **ids)
            return
        intake = raw.get("intake") or {}
        facts = {k: intake.get(k) for k in ("channel", "region_code", "category", "dispute_type", "urgency",
                                            "special_groups")}
        self._add(event, "case_opened",
                  f"Case {ids['case_id']} opened from {words(facts['channel'])}: {words(facts['category'])} "
                  f"({words(facts['dispute_type'])}), region {facts['region_code']}, urgency {facts['urgency']}",
                  **ids, **facts, registered_at=raw.get("registered_at"))
        if raw.get("policy"):  # pinned by intake (CaseWorkflowV2); legacy cases pinned it by an activity
            self._policy_pinned(event, raw["policy"])

    def _on_workflow_execution_continued_as_new(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self._add(event, "continued_as_new",
                  f"The history reached {event.event_id} events; the case continues in a new run",
                  new_run_id=attrs.new_execution_run_id)

    def _on_workflow_execution_completed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        result = _raw(attrs.result.payloads) or {}
        outcome = result.get("final_outcome")
        self._add(event, "workflow_completed", f"The case workflow finished: {words(outcome or 'no outcome')}",
                  final_outcome=outcome, closed_at=result.get("closed_at"))

    def _on_workflow_execution_failed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self._add(event, "workflow_failed", f"The case workflow failed: {attrs.failure.message}",
                  reason=attrs.failure.message)

    def _on_workflow_execution_terminated(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self._add(event, "workflow_terminated",
                  f"The case workflow was terminated by {attrs.identity or 'an unknown client'}: "
                  f"{attrs.reason or 'no reason given'}", reason=attrs.reason, identity=attrs.identity)

    def _on_workflow_execution_canceled(self, event: HistoryEvent, _attrs: Any, _h: WorkflowHistory) -> None:
        self._add(event, "workflow_canceled", "The case workflow was canceled")

    def _on_workflow_execution_timed_out(self, event: HistoryEvent, _attrs: Any, _h: WorkflowHistory) -> None:
        self._add(event, "workflow_timed_out", "The case workflow timed out")

    def _on_workflow_task_started(self, event: HistoryEvent, _attrs: Any, _h: WorkflowHistory) -> None:
        self.task_started_at = _time(event)

    def _on_workflow_task_failed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        # A bug or a non-deterministic change met in production: the workflow retries the task.
        self._add(event, "workflow_task_failed", f"A workflow task failed: {attrs.failure.message}",
                  cause=attrs.cause, reason=attrs.failure.message)

    # -- Activities: the pinned policy, the projected domain events, failures

    def _on_activity_task_scheduled(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self.activities[event.event_id] = attrs.activity_type.name
        if attrs.activity_type.name != "project_case":
            return
        projection = _raw(attrs.input.payloads) or {}
        self.clocks = _valid_items(Clock, projection.get("clocks")) or self.clocks
        self._match_waiting_timers()
        for case_event in _valid_items(CaseEvent, projection.get("events")):
            if case_event.seq <= self.last_seq:
                continue  # projected again after a failed attempt
            self.last_seq = case_event.seq
            self._add(event, "case_event", _describe_case_event(case_event), at=case_event.at,
                      actor=case_event.actor, seq=case_event.seq, type=case_event.type,
                      stage=case_event.stage.value, **case_event.data)

    def _on_activity_task_completed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        if self.activities.get(attrs.scheduled_event_id) != "pin_case_policy":
            return
        self._policy_pinned(event, _raw(attrs.result.payloads) or {})

    def _policy_pinned(self, event: HistoryEvent, policy: dict[str, Any]) -> None:
        self._add(event, "policy_pinned",
                  f"Policy {policy.get('version')} pinned to the case (fingerprint {str(policy.get('fingerprint'))[:12]})",
                  version=policy.get("version"), fingerprint=policy.get("fingerprint"),
                  max_history_events=policy.get("max_history_events"))

    def _on_activity_task_failed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self._activity_failed(event, attrs.scheduled_event_id, attrs.failure.message)

    def _on_activity_task_timed_out(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        self._activity_failed(event, attrs.scheduled_event_id, attrs.failure.message or "timed out")

    def _activity_failed(self, event: HistoryEvent, scheduled_event_id: int, reason: str) -> None:
        activity = self.activities.get(scheduled_event_id, "?")
        self._add(event, "activity_failed", f"Activity {activity} gave up: {reason}",
                  activity=activity, scheduled_event_id=scheduled_event_id, reason=reason)

    # -- People's actions: one entry per accepted update, completed later

    def _on_workflow_execution_update_accepted(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        request = attrs.accepted_request
        raw = _raw(request.input.args.payloads) or {}
        actor = _valid(Actor, raw.get("actor"))
        command = _without_personal_fields(raw.get("command") or {})
        entry = self._add(event, "action", _describe_action(actor, command, "pending"), actor=actor,
                          update_id=request.meta.update_id, request_id=raw.get("request_id"),
                          command=command, outcome="pending")
        self.actions[request.meta.update_id] = entry

    def _on_workflow_execution_update_completed(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        entry = self.actions.get(attrs.meta.update_id)
        if entry is None:
            return
        data = entry.data
        data["completed_event_id"] = event.event_id
        data["completed_at"] = _time(event).isoformat()
        if attrs.outcome.HasField("failure"):
            data.update(outcome="failed", reason=attrs.outcome.failure.message)
        else:
            data.update(outcome="completed", stage=(_raw(attrs.outcome.success.payloads) or {}).get("stage"))
            request_id = data.get("request_id")
            data["repeat"] = request_id in self.applied_requests
            self.applied_requests.add(request_id)
        entry.summary = _describe_action(entry.actor, data["command"], data["outcome"], data.get("reason"),
                                         repeat=data.get("repeat", False))

    # -- Timers: each one wakes the workflow for a clock's warning or breach

    def _on_timer_started(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        fires_at = (self.task_started_at or _time(event)) + attrs.start_to_fire_timeout.ToTimedelta()
        alarms = _alarms_due(self.clocks, fires_at)
        timer = {"timer_id": attrs.timer_id, "fires_at": fires_at.isoformat(), "alarms": alarms}
        self.timers[attrs.timer_id] = timer
        entry = self._add(event, "timer_started", _timer_set(timer), **timer)
        if not alarms:
            self.unmatched_timers.append((timer, entry))

    def _match_waiting_timers(self) -> None:
        """Match timers set before this snapshot to its clocks: the snapshot is of the case as it
        stood when they were set. Tried once: a later snapshot may show other clocks."""
        for timer, entry in self.unmatched_timers:
            timer["alarms"].extend(_alarms_due(self.clocks, datetime.fromisoformat(timer["fires_at"])))
            entry.summary = _timer_set(timer)
        self.unmatched_timers = []

    def _on_timer_fired(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        timer = self.timers.get(attrs.timer_id, {"timer_id": attrs.timer_id, "alarms": []})
        self._add(event, "timer_fired", f"Timer {attrs.timer_id} fired: {_for_alarms(timer['alarms'])} is due",
                  started_event_id=attrs.started_event_id, **timer)

    def _on_timer_canceled(self, event: HistoryEvent, attrs: Any, _h: WorkflowHistory) -> None:
        timer = self.timers.get(attrs.timer_id, {"timer_id": attrs.timer_id, "alarms": []})
        self._add(event, "timer_canceled",
                  f"Timer {attrs.timer_id} canceled before it fired: the case changed first",
                  started_event_id=attrs.started_event_id, **timer)


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _valid(model: type[BaseModel], raw: Any) -> Any:
    """`raw` read by today's `model`, or None when absent or when the model no longer reads it."""
    try:
        return model.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


def _valid_items(model: type[BaseModel], raw: Any) -> list[Any]:
    """The items today's model can read; one unreadable item does not hide the others."""
    items = [_valid(model, item) for item in raw or []]
    return [item for item in items if item is not None]


def _alarms_due(clocks: list[Clock], fires_at: datetime) -> list[dict[str, Any]]:
    """The warnings and breaches due when the timer fires: what the workflow set the timer for.

    The workflow sleeps until `lifecycle.next_alarm_at`, so the timer's end is exactly one or more
    running clocks' next alarm time; a millisecond of slack absorbs the wire's rounding.
    """
    alarms = []
    for clock in clocks:
        if clock.status is not ClockStatus.running:
            continue
        due: list[tuple[datetime, str, float | None]] = [(w.at, "warning", w.fraction)
                                                         for w in clock.warnings if w.fired_at is None]
        if not clock.breach_fired:
            due.append((clock.due_at, "breach", None))
        for at, kind, fraction in due:
            if abs((at - fires_at).total_seconds()) <= 0.001:
                alarms.append({"clock_id": clock.clock_id, "clock": clock.name, "title": clock.title,
                               "alarm": kind, "fraction": fraction, "due_at": clock.due_at.isoformat()})
    return alarms


def _timer_set(timer: dict[str, Any]) -> str:
    fires_at = datetime.fromisoformat(timer["fires_at"])
    return f"Timer {timer['timer_id']} set for {_local(fires_at)}: {_for_alarms(timer['alarms'])}"


def _for_alarms(alarms: list[dict[str, Any]]) -> str:
    if not alarms:
        return "no clock alarm known at that time"
    return "; ".join(
        (f"the {a['fraction']:.0%} warning" if a["alarm"] == "warning" else "the deadline")
        + f" of clock {a['clock_id']} ({a['title']})"
        for a in alarms
    )


def _local(moment: datetime | str | None) -> str:
    """A time as the hotline reads it: Beijing time, to the minute."""
    if moment is None:
        return "?"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(SHANGHAI).isoformat(sep=" ", timespec="minutes")


def _who(actor: Actor | None) -> str:
    return "someone" if actor is None else f"{actor.user_id} ({actor.role.value})"


# Command fields that carry a caller's personal data: the timeline says they were given, not what.
PERSONAL_COMMAND_FIELDS = frozenset({"id_number"})


def _without_personal_fields(command: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in PERSONAL_COMMAND_FIELDS and v is not None else v) for k, v in command.items()}


def _describe_action(actor: Actor | None, command: dict[str, Any], outcome: str, reason: str | None = None,
                     *, repeat: bool = False) -> str:
    kind = command.get("type", "?")
    known = COMMAND_TYPES.get(kind)
    what = known.what if known else f"do '{kind}'"
    if outcome == "failed":
        return f"{_who(actor)} could not {what}: {reason}"
    if outcome == "pending":
        return f"{_who(actor)} asked to {what}; the history records no outcome yet"
    did = known.did(command) if known else f"did '{kind}'"
    return f"{_who(actor)} {did}" + (" again: a repeated request, which changed nothing" if repeat else "")


def _describe_case_event(event: CaseEvent) -> str:
    d, who = event.data, _who(event.actor) if event.actor else "the system"
    clock = f"clock {d.get('clock_id')}"
    match event.type:
        case "case_registered":
            return f"Case registered under policy {d.get('policy_version')}"
        case "clock_started":
            return f"{clock.capitalize()} started: {d.get('title')}, {d.get('target')}, due {_local(d.get('due_at'))}"
        case "clock_met":
            return f"{clock.capitalize()} met" + (" after it had been breached" if d.get("late") else " in time")
        case "clock_cancelled":
            return f"{clock.capitalize()} cancelled"
        case "clock_paused":
            return f"{who} paused {clock} ({words(d.get('reason'))})"
        case "clock_resumed":
            return (f"{who} resumed {clock}: due {_local(d.get('previous_due_at'))} "
                    f"-> {_local(d.get('due_at'))}")
        case "clock_extended":
            return (f"{who} extended {clock} by {d.get('by')}: due {_local(d.get('previous_due_at'))} "
                    f"-> {_local(d.get('due_at'))}")
        case "clock_warning":
            return f"{clock.capitalize()} warning: {d.get('fraction', 0):.0%} of its time is used, due {_local(d.get('due_at'))}"
        case "clock_breached":
            actions = ", ".join(words(a) for a in d.get("actions") or []) or "none"
            return f"{clock.capitalize()} breached: it was due {_local(d.get('due_at'))}; breach actions: {actions}"
        case "mediator_assigned":
            return f"Mediator {d.get('mediator_name')} ({d.get('mediator_id')}) assigned"
        case "lawyer_assigned":
            return f"Lawyer {d.get('lawyer_name')} ({d.get('lawyer_id')}) assigned" + ("" if event.actor else " automatically")
        case "mediator_not_found" | "lawyer_not_found":
            return (f"No active {'mediator' if event.type == 'mediator_not_found' else 'legal-aid lawyer'} "
                    f"'{d.get('person_id')}' serves region {d.get('region_code')}; one must be assigned by hand")
        case "lawyer_named":
            return f"{who} named lawyer {d.get('lawyer_id')}; the lawyer is being looked up"
        case "no_lawyer_available":
            return f"No legal-aid lawyer available in region {d.get('region_code')}; one must be assigned by hand"
        case "escalated":
            return f"Case escalated by {who}: {d.get('reason')}"
        case "review_window_lapsed":
            return "The window to ask for a review of the refusal lapsed"
        case "case_closed":
            return f"Case closed: {words(d.get('final_outcome'))}"
        case "extension_requested":
            return (f"{who} asked to extend {clock} by {d.get('by')} (due {_local(d.get('due_at'))}): "
                    f"{d.get('reason')}")
        case "extension_approved" | "extension_refused":
            verdict = "approved" if event.type == "extension_approved" else "refused"
            return (f"{who} {verdict} the extension of {clock} by {d.get('by')} asked by "
                    f"{d.get('requested_by')}: {d.get('reason')}")
        case "extension_request_lapsed":
            return f"The extension of {clock} asked by {d.get('requested_by')} lapsed: the clock ended first"
    return f"{words(event.type).capitalize()}, by {who}; stage now {words(event.stage.value)}"


# -- Replay --------------------------------------------------------------------------------------


class ReplayResult(BaseModel):
    """One run's replay: ok, or the first event where today's code and the history part ways."""

    case_id: str
    workflow_id: str
    run_id: str
    ok: bool
    event_id: int | None = None
    reason: str | None = None
    erased: bool = Field(default=False, description="The case was erased: its history can no longer be decrypted, "
                                                    "so it was not replayed (not a divergence)")


class ReplayReport(BaseModel):
    results: list[ReplayResult] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing diverged (an erased case, which cannot be replayed, is not a divergence)."""
        return all(result.ok or result.erased for result in self.results)

    @property
    def diverged(self) -> list[ReplayResult]:
        return [result for result in self.results if not result.ok and not result.erased]


Progress = Callable[[int, int | None, ReplayResult], None]


async def replay_histories(
    histories: Iterable[WorkflowHistory] | AsyncIterable[WorkflowHistory],
    *,
    on_progress: Progress | None = None,
    total: int | None = None,
    workflows: Sequence[type] | None = None,
    workflow_runner: WorkflowRunner | None = None,
    data_converter: DataConverter | None = None,
) -> ReplayReport:
    """Replay each history against today's workflow code, configured exactly as the worker is.

    `on_progress(done, total, result)` is called after each history. `workflows` and
    `workflow_runner` replace the worker's, to try a changed workflow against recorded histories.
    Uses `workflow_replay_iterator` (what `replay_workflows` is built on) rather than
    `replay_workflows`, whose failures are keyed by run id: two files of the same run, such as an
    export and an edited copy, would be reported as one.

    `data_converter`: the one the cases ran with (`disputeflow.temporal.data_converter(settings)`,
    or a connected client's), which decrypts their payloads. Default: without keys, which replays
    only histories recorded before payloads were encrypted (such as the committed test histories);
    an encrypted one then fails, saying it lacks the key.
    """
    converter = data_converter or _KEYLESS_CONVERTER
    if workflows is None and workflow_runner is None:
        replayer = _workers_replayer(converter)
    else:
        replayer = Replayer(workflows=list(workflows or worker.WORKFLOWS),
                            workflow_runner=workflow_runner or worker.workflow_runner(), data_converter=converter)
    if total is None and isinstance(histories, Sequence):
        total = len(histories)
    report = ReplayReport()
    codec = converter.payload_codec

    def done(result: ReplayResult) -> None:
        report.results.append(result)
        if on_progress is not None:
            on_progress(len(report.results), total, result)

    async def replayable() -> AsyncIterator[WorkflowHistory]:
        # An erased case's payloads decode to "(erased)" markers, which no workflow code can run on:
        # it is reported as erased, never handed to the replayer (where it would fail as a divergence).
        async for history in _async(histories):
            erased = await _erased_case(codec, history)
            if erased is None:
                yield history
            else:
                done(ReplayResult(ok=False, erased=True, reason=str(CaseErased(erased)), case_id=erased,
                                  workflow_id=history.workflow_id, run_id=history.run_id))

    async with replayer.workflow_replay_iterator(replayable()) as replays:
        async for replay in replays:
            done(await _result(replayer, replay.history, replay.replay_failure))
    return report


async def _erased_case(codec: PayloadCodec | None, history: WorkflowHistory) -> str | None:
    """The case whose destroyed data key encrypted payloads of `history`, if any."""
    if not isinstance(codec, EncryptionCodec) or codec.case_keys is None:
        return None
    payloads = [p for event in history.events for p in _payloads_in(event) if is_encrypted(p)]
    if not payloads:
        return None
    store = codec.case_keys
    if all(store.cached(case_id) is not None for case_id in {case_of(p) for p in payloads} if case_id):
        erased = codec.erased_cases(payloads)  # every key fresh in memory: no database call, no thread
    else:
        erased = await asyncio.to_thread(codec.erased_cases, payloads)
    return erased[0] if erased else None


_REPLAYERS: dict[int, tuple[DataConverter, Replayer]] = {}


def _workers_replayer(data_converter: DataConverter) -> Replayer:
    """One replayer per data converter (in practice: per process), configured as the worker is:
    its sandbox keeps what it has imported, so only the first replay pays for that (about 0.3 s;
    see `warm_up`)."""
    known = _REPLAYERS.get(id(data_converter))
    if known is None or known[0] is not data_converter:
        known = (data_converter, Replayer(workflows=list(worker.WORKFLOWS), workflow_runner=worker.workflow_runner(),
                                          data_converter=data_converter))
        _REPLAYERS[id(data_converter)] = known
    return known[1]


WARM_UP_HISTORY = Path(__file__).parent / "data" / "replay_warmup.json"  # a consultation, start to close


async def warm_up(data_converter: DataConverter | None = None) -> bool:
    """Replay a small recorded case once with `data_converter` (the one replays will use), so that
    an auditor's first replay is as quick as the next. True if it replayed (a False is worth a
    look: the recorded case no longer replays)."""
    history = WorkflowHistory.from_json("case-warm-up", WARM_UP_HISTORY.read_text(encoding="utf-8"))
    return (await replay_histories([history], data_converter=data_converter)).ok


async def replay_case(client: Client, case_id: str, *, on_progress: Progress | None = None) -> ReplayReport:
    """Fetch every run of one case from the server and replay them. Raises `CaseNotFound`."""
    return await replay_histories(await fetch_case_history(client, case_id, decode=False), on_progress=on_progress,
                                  data_converter=client.data_converter)


async def replay_all(client: Client, *, on_progress: Progress | None = None) -> ReplayReport:
    """Replay every case workflow run the server's visibility lists (open, closed and continued).

    Needs visibility queries, which the time-skipping test server lacks; the total is None when
    the server cannot count.
    """
    try:
        total: int | None = (await client.count_workflows(CASE_WORKFLOW_QUERY)).count
    except RPCError:
        total = None
    return await replay_histories(client.list_workflows(CASE_WORKFLOW_QUERY).map_histories(),
                                  on_progress=on_progress, total=total, data_converter=client.data_converter)


async def _async(histories: Iterable[WorkflowHistory] | AsyncIterable[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    if isinstance(histories, AsyncIterable):
        async for history in histories:
            yield history
    else:
        for history in histories:
            yield history


async def _result(replayer: Replayer, history: WorkflowHistory, failure: Exception | None) -> ReplayResult:
    ids = {"case_id": _case_id(history), "workflow_id": history.workflow_id, "run_id": history.run_id}
    if failure is None:
        return ReplayResult(ok=True, **ids)
    reason, event_id = explain_replay_failure(failure)
    if event_id is None:
        event_id = await _first_diverging_event(replayer, history)
    return ReplayResult(ok=False, event_id=event_id, reason=reason, **ids)


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_EVENT_REF = re.compile(r"HistoryEvent\(id: (\d+)")
_EVENT_DUMP = re.compile(r"HistoryEvent \{ event_id: (\d+),")
_EVENT_TYPE = re.compile(r"event_type: (\w+)")


def explain_replay_failure(failure: Exception) -> tuple[str, int | None]:
    """The reason a replay failed, in Temporal's own words, and the event id when the words name it.

    The SDK core wraps its messages (`Workflow activation completion failed: Failure { failure:
    Some(Failure { message: "..." ... cause: Some(Failure { message: "..." ...`): the messages of
    the failure and its causes, joined, are the reason. Some name the event as
    `HistoryEvent(id: 5, ...)`, some dump it whole (`HistoryEvent { event_id: 38, ... }`, shortened
    here to the first form), and some name none ("Activity type of scheduled event 'x' does not
    match ...", or an exception the workflow code raised).
    """
    text = str(failure)
    messages = [m.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                for m in _CORE_MESSAGE.findall(text)]
    message = " ".join(_shorten_event_dumps(": ".join(messages) if messages else text).split())
    event = _EVENT_REF.search(message)
    return message, int(event.group(1)) if event else None


def _shorten_event_dumps(message: str) -> str:
    """Replace each `HistoryEvent { event_id: N, ... }` debug dump by `HistoryEvent(id: N, Type)`."""
    while (dump := _EVENT_DUMP.search(message)) is not None:
        depth, end = 0, len(message)
        for index in range(dump.start(), len(message)):
            if message[index] == "{":
                depth += 1
            elif message[index] == "}":
                depth -= 1
                if depth == 0:
                    end = index + 1
                    break
        kind = _EVENT_TYPE.search(message, dump.start(), end)
        message = (message[: dump.start()] + f"HistoryEvent(id: {dump.group(1)}, {kind.group(1) if kind else '?'})"
                   + message[end:])
    return message


async def _first_diverging_event(replayer: Replayer, history: WorkflowHistory) -> int | None:
    """The event at which replay first fails, found by replaying ever shorter beginnings of the history.

    A beginning that stops before the disputed event replays cleanly, one that includes it fails,
    so bisection finds it in log2(events) replays; it runs only for a history that failed.
    """
    events = history.events
    low, high = 1, len(events)  # the whole history fails
    with _SilencedRun(history.run_id):
        while low < high:
            middle = (low + high) // 2
            prefix = WorkflowHistory(history.workflow_id, events[:middle])
            replay = await replayer.replay_workflow(prefix, raise_on_replay_failure=False)
            if replay.replay_failure is None:
                low = middle + 1
            else:
                high = middle
    return events[low - 1].event_id if events else None


class _SilencedRun(logging.Filter):
    """Drops the SDK's "Failed activation" tracebacks of one run while it is bisected: each would
    repeat the one already logged when the whole history failed."""

    _LOGGER = logging.getLogger("temporalio.worker._workflow_instance")

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._marker = f"run ID {run_id}"

    def filter(self, record: logging.LogRecord) -> bool:
        return self._marker not in record.getMessage()

    def __enter__(self) -> None:
        self._LOGGER.addFilter(self)

    def __exit__(self, *_exc: object) -> None:
        self._LOGGER.removeFilter(self)
