"""`python -m disputeflow.stack` end to end: up, healthy, Ctrl-C, nothing left behind, and up again."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from disputeflow.settings import Settings
from disputeflow.stack import child_environment, port_is_free
from tests.conftest import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 20


@dataclass
class RunningStack:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stack_settings(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        api_port=free_port(),
        temporal_dev_port=free_port(),
        temporal_ui_port=free_port(),
        api_metrics_port=free_port(),
        worker_metrics_port=free_port(),
    )


def stop(stack: RunningStack) -> None:
    """After a failed test: stop the stack as Ctrl-C would, and kill what is left if that fails."""
    if stack.process.poll() is not None:
        return
    children = children_of(stack.process.pid)
    stack.process.send_signal(signal.SIGTERM)
    try:
        stack.process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_stack(settings: Settings, log: Path) -> RunningStack:
    # Every setting explicit, so the host's environment does not leak in (the stack does the same).
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "disputeflow.stack"],
            cwd=PROJECT_ROOT,
            env=child_environment(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return RunningStack(process, log)


@contextmanager
def healthy_stack(settings: Settings, log: Path, timeout: float = START_TIMEOUT_SECONDS) -> Iterator[RunningStack]:
    """A whole stack (`start_stack`) once its /health answers 200, stopped however the block ends:
    for the test modules that share one stack (the docs' commands, the metrics, the fuzzer)."""
    running = start_stack(settings, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert running.process.poll() is None, f"the stack exited early:\n{running.output()}"
            try:
                if httpx.get(f"http://127.0.0.1:{settings.api_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"/health not 200 within {timeout:g} s:\n{running.output()}"
            time.sleep(0.25)
        yield running
    finally:
        stop(running)


async def wait_healthy(stack: RunningStack, settings: Settings) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            assert stack.process.poll() is None, f"the stack exited early:\n{stack.output()}"
            try:
                if (await http.get(f"http://127.0.0.1:{settings.api_port}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    pytest.fail(f"/health not 200 within {START_TIMEOUT_SECONDS} s:\n{stack.output()}")


async def wait_banner(stack: RunningStack) -> str:
    """The banner comes once the stack itself has seen the API's port open, which can be a poll
    interval after /health first answers: wait for it rather than race it."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        output = stack.output()
        if "disputeflow is running" in output:
            return output
        assert stack.process.poll() is None, f"the stack exited early:\n{output}"
        await asyncio.sleep(0.1)
    pytest.fail(f"no banner within {START_TIMEOUT_SECONDS} s:\n{stack.output()}")


async def wait_exit(stack: RunningStack) -> int:
    try:
        return await asyncio.to_thread(stack.process.wait, STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the stack did not exit within {STOP_TIMEOUT_SECONDS} s:\n{stack.output()}")


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
    return state, int(ppid), int(pgrp)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children_of(pid: int) -> dict[int, str]:
    """The stack's child processes: pid -> command line."""
    found = {}
    for child in _all_pids():
        stat = _proc_stat(child)
        if stat and stat[1] == pid:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def survivors(process_groups: set[int]) -> list[int]:
    """Live (not zombie) processes in any of the given process groups."""
    return [
        pid
        for pid in _all_pids()
        if (stat := _proc_stat(pid)) is not None and stat[2] in process_groups and stat[0] != "Z"
    ]


def assert_all_stopped(settings: Settings, process_groups: set[int]) -> None:
    for port in (settings.api_port, settings.temporal_dev_port, settings.temporal_ui_port,
                 settings.api_metrics_port, settings.worker_metrics_port):
        assert port_is_free("127.0.0.1", port), f"port {port} still taken"
    assert survivors(process_groups) == []


async def start_probe_workflow(settings: Settings) -> str:
    """A workflow no worker serves: it stays open, so a later run can look for it."""
    client = await Client.connect(settings.effective_temporal_address, namespace=settings.temporal_namespace)
    workflow_id = f"persistence-probe-{uuid.uuid4().hex[:8]}"
    await client.start_workflow("PersistenceProbe", id=workflow_id, task_queue=f"probe-{workflow_id}")
    return workflow_id


async def probe_workflow_is_running(settings: Settings, workflow_id: str) -> bool:
    client = await Client.connect(settings.effective_temporal_address, namespace=settings.temporal_namespace)
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.status.name == "RUNNING"


def test_children_see_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = stack_settings(tmp_path / "data").model_copy(
        update={"database_url": "postgresql+psycopg://u:p@db:5432/x", "temporal_namespace": "hotline"}
    )
    env = child_environment(settings)
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == settings


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


async def console_registers_and_sends_to_mediation(origin: str) -> None:
    """What a newcomer does in the console of `make run` (tests/test_console_browser.py does it in a
    browser): sign in from the development list, register a call, send it to mediation."""
    async with httpx.AsyncClient(base_url=origin, follow_redirects=True, timeout=30) as browser:
        signin = await browser.get("/")
        assert signin.url.path == "/console/signin" and "signin-op-1" in signin.text
        intake = await browser.post("/console/signin/dev", data={"csrf": _csrf(signin.text), "user_id": "op-1"})
        assert intake.url.path == "/console/intake", intake.text[:500]
        case = await browser.post("/console/intake", data={
            "csrf": _csrf(intake.text), "idempotency_key": "stack-console-1", "channel": "hotline",
            "caller.name": "张三", "caller.phone": "13800138000", "region_code": "370102", "category": "dispute",
            "dispute_type": "labour_wages", "urgency": "normal", "description": "工地拖欠三个月工资。"})
        assert case.status_code == 200 and case.url.path.startswith("/console/cases/370102-"), case.text[:500]
        sent = await browser.post(f"{case.url.path}/act/send_to_mediation", data={"csrf": _csrf(case.text)})
        assert sent.status_code == 200 and "med-370102-" in sent.text, sent.text[:500]


async def test_make_run_starts_stops_and_restarts_on_the_same_data(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "data")

    # First run: up and healthy, then Ctrl-C.
    first = start_stack(settings, tmp_path / "first.log")
    try:
        await wait_healthy(first, settings)
        output = await wait_banner(first)
        assert f"http://127.0.0.1:{settings.api_port}/docs" in output
        urls = re.findall(r"http://\S+", output.split("disputeflow is running.")[-1])
        assert urls[0] == f"http://127.0.0.1:{settings.api_port}/console/"  # the console first
        await console_registers_and_sends_to_mediation(f"http://127.0.0.1:{settings.api_port}")
        assert f"http://127.0.0.1:{settings.temporal_ui_port}" in output
        assert str(tmp_path / "data") in output
        children = children_of(first.process.pid)
        assert len(children) == 3, children  # dev server, worker, API
        await assert_the_web_ui_decodes_through_the_api(settings)
        probe = await start_probe_workflow(settings)
        first.process.send_signal(signal.SIGINT)
        assert await wait_exit(first) == 0, first.output()
    finally:
        stop(first)
    assert_all_stopped(settings, set(children))  # each child led its own process group
    assert settings.temporal_db_file.stat().st_size > 0
    assert (settings.data_dir / "disputeflow.db").exists()

    # Second run on the same folder and ports: the first run's workflow is still there. Then the
    # worker dies: the stack stops the rest and says which one died.
    second = start_stack(settings, tmp_path / "second.log")
    try:
        await wait_healthy(second, settings)
        assert await probe_workflow_is_running(settings, probe)
        children = children_of(second.process.pid)
        (worker,) = [pid for pid, cmdline in children.items() if "worker.py" in cmdline]
        os.kill(worker, signal.SIGKILL)
        assert await wait_exit(second) != 0
        assert "the worker exited unexpectedly" in second.output()
    finally:
        stop(second)
    assert_all_stopped(settings, set(children))


def test_a_taken_port_fails_fast(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "data")
    with socket.create_server(("127.0.0.1", settings.api_port)):
        stack = start_stack(settings, tmp_path / "stack.log")
        try:
            assert stack.process.wait(STOP_TIMEOUT_SECONDS) == 1
        finally:
            stop(stack)
    assert f"port {settings.api_port} (API) is already in use" in stack.output()
    assert not settings.temporal_db_file.exists()  # nothing was started



async def assert_the_web_ui_decodes_through_the_api(settings: Settings) -> None:
    """The dev server's Web UI is told the API's codec endpoint, the API admits the UI's origin
    there, and the data folder with its keys is its owner's alone."""
    import stat

    import httpx

    api, ui = f"http://127.0.0.1:{settings.api_port}", f"http://127.0.0.1:{settings.temporal_ui_port}"
    async with httpx.AsyncClient(timeout=10) as http:
        ui_settings = (await http.get(f"{ui}/api/v1/settings")).json()
        assert ui_settings["Codec"]["Endpoint"] == f"{api}/codec", ui_settings
        preflight = await http.options(f"{api}/codec/decode", headers={
            "Origin": ui, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
        assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == ui
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    keys = settings.data_dir / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in keys.iterdir()} == {
        "payload-keys.json": 0o600, "token-signing-key.pem": 0o600,
        "console-session.key": 0o600}  # made when the console is first used (above)


def test_the_dev_servers_web_ui_decodes_through_the_apis_codec_endpoint() -> None:
    from disputeflow.settings import Settings
    from disputeflow.stack import temporal_dev_server_argv

    argv = temporal_dev_server_argv(Settings(_env_file=None, api_host="0.0.0.0", api_port=8123))
    assert argv[argv.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8123/codec"
