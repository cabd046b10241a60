"""The fault suite's stack: the real processes, on loopback and free ports, that the tests break.

One stack for the fault suite, stopped when its last test is done (a Temporal dev server on a
SQLite file, the worker, the API), each process the leader of its own process group, started with
every setting as an environment variable (`disputeflow.stack.child_environment`), stopped by its
pid: SIGTERM to its group, then SIGKILL. Before every test the `stack` fixture brings back whatever
an earlier test left stopped, so each test starts from a running stack; tests tell their cases
apart by their own case ids.

The policy is the shipped one with the emergency clock shortened to `EMERGENCY_SECONDS`, so a
worker can stay down past several deadlines in seconds rather than hours. Every wait here is a
poll with a short sleep and a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from disputeflow.db.engine import make_engine
from disputeflow.domain.policy import load_policy
from disputeflow.settings import DEFAULT_POLICY_FILE, Settings
from disputeflow.stack import child_environment, port_accepts, temporal_binary
from disputeflow.temporal import connect, search_attribute_flags
from tests.conftest import free_port
from tests.samples import WAGE_ARREARS_CALL

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EMERGENCY_SECONDS = 5.0  # the emergency clock of the suite's policy (1 hour in the shipped one)
START_TIMEOUT = 45.0  # for a process to be ready (the API's first start imports a lot)
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL after this long
POLL = 0.1

# Who calls: (user id, role, region).
OPERATOR = ("op-1", "operator", "370102")
SUPERVISOR = ("sup-1", "supervisor", "3701")

# What the caller said, which must never show in a log.
CALLER_NAME = WAGE_ARREARS_CALL["caller"]["name"]
CALLER_PHONE = WAGE_ARREARS_CALL["caller"]["phone"]


async def until(what: str, check: Callable[[], Awaitable[Any] | Any], timeout: float, pause: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(pause)


def write_fast_policy(folder: Path, seconds: float) -> Path:
    """The shipped policy with the emergency clock's target shortened to `seconds` (as
    benchmarks/breach_lateness.py does)."""
    policy_text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    block = re.compile(r'(clock = "emergency_response"\n(?:(?!\[\[).*\n)*?)target = \{[^}\n]*\}')
    hours = seconds / 3600
    policy_text, found = block.subn(
        lambda m: m.group(1) + f'target = {{ amount = {hours!r}, unit = "calendar_hours" }}', policy_text, count=1)
    assert found == 1, "no target line for the emergency_response clock to shorten"
    policy_text = re.sub(r'^version = "([^"]*)"', r'version = "\1-faults"', policy_text, count=1, flags=re.MULTILINE)
    path = folder / "policy.toml"
    path.write_text(policy_text, encoding="utf-8")
    rule = next(r for r in load_policy(path).clocks if r.clock == "emergency_response" and r.when.urgencies)
    assert rule.target.amount == hours
    return path


class Process:
    """One process of the stack, the leader of its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen | None = None
        self.log_offset = 0  # where this start's output begins

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=PROJECT_ROOT, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def _signal_group(self, signum: int) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signum)  # its group: the pid of its leader
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """kill -9, as a crash or the OOM killer would."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        self.popen.wait(STOP_GRACE)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_GRACE` seconds; anything left in its group goes too."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.popen.wait(STOP_GRACE)

    def output(self, since_start: bool = True) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self.log_offset if since_start else 0)
            return f.read().decode(errors="replace")


@dataclass
class FaultStack:
    folder: Path
    settings: Settings
    env: dict[str, str]
    temporal: Process
    worker: Process
    api: Process
    engine: Engine
    http: httpx.AsyncClient
    tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @property
    def processes(self) -> list[Process]:
        return [self.temporal, self.worker, self.api]

    # -- bringing processes up ----------------------------------------------------------------

    async def start_temporal(self) -> None:
        self.temporal.start()

        async def answers() -> bool:
            assert self.temporal.running, f"the dev server exited:\n{self.temporal.output()[-3000:]}"
            if not port_accepts("127.0.0.1", self.settings.temporal_dev_port):
                return False
            try:
                await asyncio.wait_for(connect(self.settings), 2.0)
            except Exception:  # noqa: BLE001 - not ready yet
                return False
            return True

        await until("the Temporal dev server answers", answers, START_TIMEOUT)

    async def start_worker(self) -> None:
        self.worker.start()

        def polling() -> bool:
            assert self.worker.running, f"the worker exited:\n{self.worker.output()[-3000:]}"
            return "worker polling task queue" in self.worker.output()

        await until("the worker polls", polling, START_TIMEOUT)

    async def start_api(self) -> None:
        self.api.start()

        async def answers() -> bool:
            assert self.api.running, f"the API exited:\n{self.api.output()[-3000:]}"
            try:
                await self.http.get("/health", timeout=5)
            except httpx.TransportError:
                return False
            return True

        await until("the API answers", answers, START_TIMEOUT)

    async def ensure_up(self) -> None:
        if not self.temporal.running:
            await self.start_temporal()
        if not self.worker.running:
            await self.start_worker()
        if not self.api.running:
            await self.start_api()

    async def stop_temporal(self) -> None:
        """Stop the dev server (SIGTERM, as an operator would); `start_temporal` starts it again on the same file."""
        await asyncio.to_thread(self.temporal.stop)

    async def restart_temporal(self, down_for: float = 0.0) -> None:
        await self.stop_temporal()
        await asyncio.sleep(down_for)
        await self.start_temporal()

    async def kill_worker(self) -> None:
        await asyncio.to_thread(self.worker.kill)

    async def stop_worker(self) -> None:
        await asyncio.to_thread(self.worker.stop)

    def stop_all(self) -> None:
        for process in reversed(self.processes):  # the API first, the dev server last
            process.stop()

    # -- calling the API ---------------------------------------------------------------------

    def token(self, who: tuple[str, str, str]) -> str:
        """`disputeflow token` with the stack's environment, as a person would get one."""
        if who not in self.tokens:
            user, role, region = who
            cli = Path(sys.executable).parent / "disputeflow"
            done = subprocess.run([str(cli), "token", "--user", user, "--role", role, "--region", region],
                                  cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            self.tokens[who] = done.stdout.strip()
        return self.tokens[who]

    def auth(self, who: tuple[str, str, str] = OPERATOR, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(who)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def open_case(self, **overrides: Any) -> str:
        """Register a case (201) and wait until the read model has it."""
        response = await self.http.post("/cases", json=intake_body(**overrides), headers=self.auth(key=new_key()))
        assert response.status_code == 201, response.text
        case_id = response.json()["case_id"]
        await until(f"case {case_id} in the read model", lambda: self.case_rows([case_id]), 30)
        return case_id

    # -- reading the read model ---------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[Any]:
        statement = text(sql)
        for name, value in params.items():
            if isinstance(value, (list, tuple, set)):
                statement = statement.bindparams(bindparam(name, expanding=True))
        with self.engine.connect() as conn:
            return list(conn.execute(statement, params))

    def case_rows(self, case_ids: Iterable[str]) -> list[Any]:
        return self.query("SELECT * FROM cases WHERE case_id IN :ids", ids=list(case_ids))

    def event_counts(self, case_ids: Iterable[str], event_type: str) -> dict[str, int]:
        """case id -> how many events of this type the read model holds (0 included)."""
        ids = list(case_ids)
        rows = self.query("SELECT case_id, count(*) FROM case_events WHERE case_id IN :ids AND type = :type "
                          "GROUP BY case_id", ids=ids, type=event_type)
        counts = dict.fromkeys(ids, 0)
        counts.update({case_id: n for case_id, n in rows})
        return counts

    def outbox_counts(self, case_ids: Iterable[str], kind: str) -> dict[str, int]:
        ids = list(case_ids)
        rows = self.query("SELECT case_id, count(*) FROM outbox WHERE case_id IN :ids AND kind = :kind "
                          "GROUP BY case_id", ids=ids, kind=kind)
        counts = dict.fromkeys(ids, 0)
        counts.update({case_id: n for case_id, n in rows})
        return counts

    def assert_no_personal_data_logged(self) -> None:
        for process in (self.worker, self.api):
            logged = process.output(since_start=False)
            assert CALLER_NAME not in logged and CALLER_PHONE not in logged, f"{process.name} logged the caller"


def new_key() -> str:
    return uuid.uuid4().hex


def intake_body(**overrides: Any) -> dict[str, Any]:
    """The sample call, its description made unique so that every body is a distinct request."""
    return WAGE_ARREARS_CALL | {"description": f"{WAGE_ARREARS_CALL['description']}{uuid.uuid4().hex[:8]}"} | overrides


def assert_allowed(response: httpx.Response, *, accepted_location: str | None = None) -> int:
    """Every answer under a fault: the result, 202 (accepted, where to read it) or 503 (retry
    after), always JSON; never 500, 502 or a plain-text body. Returns the status."""
    assert response.status_code in (200, 201, 202, 503), f"{response.status_code}: {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.text[:500]
    body = response.json()
    if response.status_code == 202:
        assert body["status"] == "accepted", body
        assert body["request_id"] and body["case_id"], body
        assert response.headers["Location"] == (accepted_location or f"/cases/{body['case_id']}")
    elif response.status_code == 503:
        assert int(response.headers["Retry-After"]) > 0
        assert isinstance(body["detail"], str) and body["detail"], body
    return response.status_code


@pytest.fixture(scope="package")  # stopped once the fault suite is done, not at the end of the run
async def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    folder = tmp_path_factory.mktemp("faults")
    data = folder / "data"
    data.mkdir()
    settings = Settings(
        _env_file=None, data_dir=data, policy_file=write_fast_policy(folder, EMERGENCY_SECONDS),
        temporal_dev_port=free_port(), temporal_ui_port=free_port(), api_port=free_port(),
        temporal_task_queue="fault-suite-cases",
    )
    env = child_environment(settings)
    temporal_argv = [
        temporal_binary(), "server", "start-dev", "--db-filename", str(settings.temporal_db_file),
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--port", str(settings.temporal_dev_port), "--ip", "127.0.0.1", "--headless",
        "--namespace", settings.temporal_namespace, "--log-level", "warn", *search_attribute_flags(),
    ]
    api_argv = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1",
                "--port", str(settings.api_port)]
    stack = FaultStack(
        folder=folder, settings=settings, env=env,
        temporal=Process("the Temporal dev server", temporal_argv, env, folder / "temporal.log"),
        worker=Process("the worker", [sys.executable, "worker.py"], env, folder / "worker.log"),
        api=Process("the API", api_argv, env, folder / "api.log"),
        engine=make_engine(settings.effective_database_url),
        http=httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=60),
    )
    try:
        await stack.ensure_up()
        yield stack
    finally:
        await stack.http.aclose()
        stack.stop_all()
        stack.engine.dispose()


@pytest.fixture
async def stack(fault_stack: FaultStack) -> AsyncIterator[FaultStack]:
    """The suite's stack, every process running (restarted if an earlier test left one down)."""
    await fault_stack.ensure_up()
    yield fault_stack
    fault_stack.assert_no_personal_data_logged()
