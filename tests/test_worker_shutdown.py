"""The worker stops gracefully: on SIGTERM an activity in flight runs to its end (within
DISPUTEFLOW_WORKER_SHUTDOWN_GRACE_SECONDS) instead of being cancelled, and `make run` waits for the
worker at least that long before it kills it. Real processes, loopback only, every wait bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from disputeflow import stack as stack_module
from disputeflow.settings import Settings
from disputeflow.stack import Stack, StackError, child_environment, worker_grace_seconds
from tests.test_health import start_dev_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    async with await start_dev_server() as env:
        yield env.client


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None,
              log: Path | None = None) -> float:
    """Poll until `condition` holds (bounded); the seconds it took."""
    started = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None and not condition():
            pytest.fail(f"the process exited ({process.returncode}) before {what}:\n{log.read_text() if log else ''}")
        if time.monotonic() - started > timeout:
            pytest.fail(f"not {what} within {timeout:g} s:\n{log.read_text() if log else ''}")
        time.sleep(0.05)
    return time.monotonic() - started


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


async def _sigterm_during_a_slow_activity(tmp_path: Path, client: Client, grace: float) -> tuple[int, float, str]:
    """Start the worker (tests/slow_worker.py), start a slow activity, SIGTERM the worker while it
    runs: (exit code, seconds from SIGTERM to exit, the worker's log)."""
    task_queue = f"shutdown-{uuid.uuid4().hex[:8]}"
    settings = Settings(_env_file=None, temporal_address=client.service_client.config.target_host,
                        temporal_namespace="default", temporal_task_queue=task_queue, data_dir=tmp_path,
                        worker_shutdown_grace_seconds=grace)
    env = child_environment(settings) | {"SLOW_ACTIVITY_DIR": str(tmp_path), "SLOW_ACTIVITY_SECONDS": "1.5"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.slow_worker"], cwd=PROJECT_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        handle = await client.start_workflow("SlowWorkflow", id=f"slow-{task_queue}", task_queue=task_queue)
        _wait_for((tmp_path / "started").exists, START_TIMEOUT_SECONDS, "the activity started", process, log)
        os.kill(process.pid, signal.SIGTERM)
        took = _wait_for(lambda: process.poll() is not None, grace + 15, "the worker exited", None, log)
        history = await handle.fetch_history()
        kinds = {event.event_type for event in history.events}
        completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in kinds
        return process.returncode, took, log.read_text() + f"\nactivity completed in history: {completed}"
    finally:
        _stop(process)


async def test_sigterm_lets_the_running_activity_finish(tmp_path: Path, temporal: Client) -> None:
    code, took, log = await _sigterm_during_a_slow_activity(tmp_path, temporal, grace=10)
    assert code == 0, log
    assert (tmp_path / "finished").exists() and not (tmp_path / "cancelled").exists(), log
    assert "activity completed in history: True" in log
    assert "will wait 0:00:10 before cancelling activities" in log  # the setting reached the SDK
    assert took < 10, log  # it waited for the activity, not for the whole grace period


async def test_without_a_grace_period_the_activity_is_cancelled(tmp_path: Path, temporal: Client) -> None:
    """The control: what the worker did before (grace 0), so the test above can tell."""
    code, _took, log = await _sigterm_during_a_slow_activity(tmp_path, temporal, grace=0)
    assert code == 0, log  # cancelled, but a clean exit all the same (no SIGABRT at teardown)
    assert (tmp_path / "cancelled").exists() and not (tmp_path / "finished").exists(), log
    assert "activity completed in history: False" in log


def test_the_default_grace_period_and_the_stacks_wait() -> None:
    settings = Settings(_env_file=None)
    assert settings.worker_shutdown_grace_seconds == 30
    assert worker_grace_seconds(settings) >= 30 + stack_module.WORKER_STOP_MARGIN_SECONDS
    assert worker_grace_seconds(settings.model_copy(update={"worker_shutdown_grace_seconds": 0})) \
        == stack_module.GRACE_SECONDS


def test_make_run_gives_the_worker_its_grace_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_start` spawns the worker with the longer grace (and the API with the usual one)."""
    spawned: dict[str, float] = {}

    def spawn(self: Stack, name: str, argv: list[str], env: dict[str, str], grace: float = stack_module.GRACE_SECONDS):
        spawned[name] = grace
        if name == "the API":
            raise StackError("enough: nothing is started in this test")

    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setattr(Stack, "_spawn", spawn)
    settings = Settings(_env_file=None, temporal_address="127.0.0.1:1", data_dir=tmp_path,
                        worker_shutdown_grace_seconds=45)
    with pytest.raises(StackError, match="enough"):
        Stack(settings)._start()
    assert spawned == {"the worker": 45 + stack_module.WORKER_STOP_MARGIN_SECONDS,
                       "the API": stack_module.GRACE_SECONDS}


SLOW_TO_STOP = """
import pathlib, signal, sys, time
def stop(*_):
    time.sleep(1.0)  # finishing what it was doing
    pathlib.Path(sys.argv[1]).touch()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pathlib.Path(sys.argv[1] + ".ready").touch()
for _ in range(600):
    time.sleep(0.05)
"""


def test_stopping_waits_for_the_worker_longer_than_for_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Two children that each need 1 s to stop after SIGTERM; the usual grace is cut to 0.3 s: the
    API is killed after it, the worker (grace 2 s + margin) is let finish."""
    monkeypatch.setattr(stack_module, "GRACE_SECONDS", 0.3)
    monkeypatch.setattr(stack_module, "STOP_NOTICE_AFTER_SECONDS", 0.5)
    settings = Settings(_env_file=None, data_dir=tmp_path, worker_shutdown_grace_seconds=2)
    stack = Stack(settings)
    env = dict(os.environ)
    try:
        worker = stack._spawn("the worker", [sys.executable, "-c", SLOW_TO_STOP, str(tmp_path / "worker")], env,
                              grace=worker_grace_seconds(settings))
        api = stack._spawn("the API", [sys.executable, "-c", SLOW_TO_STOP, str(tmp_path / "api")], env, grace=0.3)
        for name, child in (("worker", worker), ("api", api)):
            _wait_for((tmp_path / f"{name}.ready").exists, START_TIMEOUT_SECONDS, f"{name} ready", child.process)
        started = time.monotonic()
        stack._stop_all()
        took = time.monotonic() - started
    finally:
        for child in stack.children:
            _stop(child.process)
    assert api.process.returncode == -signal.SIGKILL and not (tmp_path / "api").exists()
    assert worker.process.returncode == 0 and (tmp_path / "worker").exists()
    assert took < 5
    said = capsys.readouterr().out
    assert f"waiting up to {worker_grace_seconds(settings):g} s for the worker to stop" in said
    assert "the API did not stop within 0.3 s; killing it" in said
