"""The worker's sandbox runner answers "whose payload is this?" outside the sandbox, and answers it
exactly as the sandbox does: a payload bound to another case would be encrypted with the wrong
case's key (docs/data-protection.md), so the two runners are compared payload by payload on every
committed history."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import worker
from disputeflow.history import load_history_files
from disputeflow.temporal import EncryptedFailureConverter
from tests.conftest import LEGACY_HISTORY_DIR, V2_HISTORY_FILES

FILES = V2_HISTORY_FILES + sorted(LEGACY_HISTORY_DIR.glob("*.json"))


class _Recording(PayloadCodec, WithSerializationContext):
    """Passes payloads through; notes the context it was bound to for each payload it encodes."""

    def __init__(self, seen: list[tuple[str, ...]], context: SerializationContext | None = None) -> None:
        self.seen, self.context = seen, context

    def with_context(self, context: SerializationContext) -> _Recording:
        return _Recording(self.seen, context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        described = ("none", "", "") if self.context is None else (
            type(self.context).__name__, str(getattr(self.context, "workflow_id", "")), repr(self.context))
        self.seen.extend(described for _ in payloads)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def _contexts(runner: SandboxedWorkflowRunner, history: WorkflowHistory) -> list[tuple[str, ...]]:
    seen: list[tuple[str, ...]] = []
    # As the worker's (disputeflow.temporal.data_converter), with the recording codec for the encryption.
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=_Recording(seen),
                                    failure_converter_class=EncryptedFailureConverter)
    replayer = Replayer(workflows=list(worker.WORKFLOWS), workflow_runner=runner, data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    return seen


def test_the_runner_is_the_sdk_sandbox_with_the_context_answered_outside() -> None:
    from temporalio.worker.workflow_sandbox._runner import _Instance

    assert issubclass(worker._ContextOutsideTheSandbox, _Instance)
    assert isinstance(worker.workflow_runner(), SandboxedWorkflowRunner)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_every_payload_is_bound_to_the_same_context_as_in_the_sandbox(path: Path) -> None:
    history = load_history_files(path.parent)[path]
    plain = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*worker.PASSTHROUGH_MODULES))
    expected = await _contexts(plain, history)
    assert expected, "the replay encoded no payload: nothing was compared"
    assert await _contexts(worker.workflow_runner(), history) == expected
    # Each is bound to this case's workflow (its own payloads and its activities'), never to another.
    assert {workflow_id for kind, workflow_id, _ in expected if kind != "none"} == {history.workflow_id}
