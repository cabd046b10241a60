"""Intake and replay on the real stack, as ratios measured in one run.

    python benchmarks/case_workflow.py [--cases 300] [--concurrency 16] [--replays 20]

Starts the whole stack as `make run` does (`python -m disputeflow.stack`: the Temporal dev server on
a SQLite file in WAL mode, the worker and the API, each its own process) in a temporary data folder
on free ports, then measures, at the same concurrency:

1. raw starts: `client.start_workflow(CaseWorkflowV2.run, ...)` of `--cases` cases, straight to
   Temporal (the input pinned as intake pins it): the baseline;
2. intake: `POST /cases` of `--cases` cases through the API (claim a case number, start, answer
   with the opened case);
3. raw starts again, so that a drift of the machine during the run shows;
4. replay: an emergency case is opened, warned, escalated and worked on through the API, then
   `POST /cases/{id}/replay` is called `--replays` times.

It prints each figure beside its goal: intake rate / raw start rate (mean of both raw phases) >= 0.9;
intake latency p50 <= 100 ms and p95 <= 250 ms; replay p95 <= 50 ms. Every loop is bounded; the
stack is stopped (SIGINT to its process group, then SIGKILL) however the run ends.

The rates depend on what else the machine runs; the CPU does not, much. After each phase the
benchmark waits until the worker has opened every case it started, and it prints the CPU time per
case of each process in that phase (from /proc: the benchmark itself, the API, the worker, the
Temporal server), and the CPU of an intake over the CPU of a raw start.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from disputeflow.contracts import workflow_id_for
from disputeflow.domain.intake import Intake
from disputeflow.pinning import PolicyPins
from disputeflow.settings import Settings
from disputeflow.temporal import connect
from disputeflow.progress import Progress
from workflows.case import CaseWorkflowV2
import figures  # benchmarks/figures.py, beside this script
from figures import Figure

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(index: int, *, urgency: str = "normal") -> dict:
    return {
        "channel": "hotline", "caller": {"name": "压测来电人", "phone": f"138{index:08d}"},
        "region_code": "370102", "category": "dispute", "dispute_type": "labour_wages", "urgency": urgency,
        "description": f"工地拖欠工资（压测 {index}）",
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc (0 when it is gone or /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def stack_processes(root: int) -> dict[str, int]:
    """The stack's processes by role: api, worker, temporal (the dev server), and this benchmark."""
    roles = {"benchmark": os.getpid()}
    pending = [root]
    while pending:
        pid = pending.pop()
        pending.extend(_children(pid))
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for role, marker in (("api", "uvicorn"), ("worker", "worker.py"), ("temporal", "server start-dev")):
            if marker in command:
                roles[role] = pid
    return roles


def cpu_snapshot(processes: dict[str, int]) -> dict[str, float]:
    return {role: _cpu_seconds(pid) for role, pid in processes.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return math.nan if not ordered else ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def bounded(concurrency: int, jobs: list, description: str = "running") -> list[float]:
    """Run the coroutine factories in `jobs`, `concurrency` at a time; each one's seconds. A
    progress bar on a terminal (`disputeflow.progress`), nothing in CI."""
    gate = asyncio.Semaphore(concurrency)

    with Progress(len(jobs), description) as bar:
        async def timed(job) -> float:
            async with gate:
                began = time.perf_counter()
                await job()
                took = time.perf_counter() - began
            bar.update()
            return took

        return await asyncio.gather(*(timed(job) for job in jobs))


class Stack:
    def __init__(self, folder: Path) -> None:
        self.api_port = free_port()
        self.env = dict(os.environ, DISPUTEFLOW_DATA_DIR=str(folder), TEMPORAL_DEV_PORT=str(free_port()),
                        TEMPORAL_UI_PORT=str(free_port()), DISPUTEFLOW_API_PORT=str(self.api_port),
                        DISPUTEFLOW_API_METRICS_PORT=str(free_port()), DISPUTEFLOW_WORKER_METRICS_PORT=str(free_port()),
                        # one benchmark user sends far more than a person: no per-user limits here
                        DISPUTEFLOW_RATE_LIMIT_PER_MINUTE="1000000", DISPUTEFLOW_RATE_LIMIT_SEARCH_PER_MINUTE="1000000",
                        DISPUTEFLOW_RATE_LIMIT_EXPENSIVE_PER_MINUTE="1000000")
        self.process: subprocess.Popen | None = None

    def settings(self) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "disputeflow.stack"], cwd=ROOT, env=self.env,
                                        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the stack exited with {self.process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit("the stack did not come up in time")

    def token(self, user: str, role: str, region: str) -> str:
        out = subprocess.run([sys.executable, "-m", "disputeflow", "token", "--user", user, "--role", role,
                              "--region", region], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


async def raw_starts(stack: Stack, n: int, concurrency: int, label: str) -> tuple[float, list[float]]:
    settings = stack.settings()
    client = await connect(settings)
    pins = PolicyPins(settings.policy_file)

    def job(index: int):
        async def start() -> None:
            case_id = f"RAW{label}-{uuid.uuid4().hex[:10]}"
            arg = pins.start(case_id, Intake.model_validate(call(index)), registered_at=datetime.now(UTC),
                             registered_by=None)
            await client.start_workflow(CaseWorkflowV2.run, arg, id=workflow_id_for(case_id),
                                        task_queue=settings.temporal_task_queue)
        return start

    began = time.perf_counter()
    latencies = await bounded(concurrency, [job(i) for i in range(n)], f"raw starts {label}")
    return n / (time.perf_counter() - began), latencies


async def intakes(http: httpx.AsyncClient, token: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    def job(index: int):
        async def post() -> None:
            response = await http.post("/cases", json=call(100_000 + index),
                                       headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 201:
                raise RuntimeError(f"POST /cases answered {response.status_code}: {response.text[:200]}")
        return post

    began = time.perf_counter()
    latencies = await bounded(concurrency, [job(i) for i in range(n)], "POST /cases")
    return n / (time.perf_counter() - began), latencies


async def caught_up(stack: Stack, *, expected: int, timeout: float = 300.0) -> None:
    """Wait until the read model holds every case started so far: the worker has opened them all."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.settings().effective_database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text("SELECT count(*) FROM cases")).scalar_one() >= expected:
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the worker had not opened {expected} cases within {timeout:g} s")
    finally:
        engine.dispose()


async def replays(http: httpx.AsyncClient, operator: str, supervisor: str, auditor: str, n: int) -> list[float]:
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    case = (await http.post("/cases", json=call(999_999, urgency="emergency"), headers=auth(operator))).json()
    case_id = case["case_id"]
    for action, body, who in [
        ("escalate", {"reason": "情况紧急，请主任协调"}, operator),
        ("reassign_mediator", {"reason": "指派调解员"}, supervisor),
        ("record_mediation_session", {"outcome": "no_agreement", "notes": "双方分歧较大"}, supervisor),
        ("escalate", {"reason": "调解未果"}, supervisor),
    ]:
        response = await http.post(f"/cases/{case_id}/actions/{action}", json=body, headers=auth(who))
        if response.status_code != 200:
            raise RuntimeError(f"{action} answered {response.status_code}: {response.text[:200]}")
    timings = []
    for _ in range(n):
        began = time.perf_counter()
        response = await http.post(f"/cases/{case_id}/replay", headers=auth(auditor))
        timings.append(time.perf_counter() - began)
        if response.status_code != 200 or not response.json()["ok"]:
            raise RuntimeError(f"replay answered {response.status_code}: {response.text[:200]}")
    history = await http.get(f"/cases/{case_id}/history", headers=auth(auditor))
    print(f"  replayed case {case_id}: {history.text.count('eventId')} events in its history")
    return timings


async def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="disputeflow-bench-"))
    stack = Stack(folder)
    try:
        stack.start()
        operator = stack.token("op-bench", "operator", "370102")
        supervisor = stack.token("sup-bench", "supervisor", "3701")
        auditor = stack.token("aud-bench", "auditor", "37")
        print(f"stack up; {args.cases} cases per phase, concurrency {args.concurrency}, {os.cpu_count()} CPUs")
        processes = stack_processes(stack.process.pid)
        cpu: dict[str, dict[str, float]] = {}

        async def phase(name: str, expected: int, run):
            """Run one phase, wait until the worker has opened its cases too, note the CPU it took."""
            before = cpu_snapshot(processes)
            result = await run
            await caught_up(stack, expected=expected)
            after = cpu_snapshot(processes)
            cpu[name] = {role: (after[role] - before[role]) / args.cases * 1000 for role in processes}
            return result

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=60) as http:
            await intakes(http, operator, 10, 4)  # warm-up: connections, caches, the first workflow tasks
            await caught_up(stack, expected=10)
            raw_before, raw_latencies = await phase("raw starts (A)", 10 + args.cases,
                                                    raw_starts(stack, args.cases, args.concurrency, "A"))
            rate, latencies = await phase("POST /cases", 10 + 2 * args.cases,
                                          intakes(http, operator, args.cases, args.concurrency))
            raw_after, more_raw_latencies = await phase("raw starts (B)", 10 + 3 * args.cases,
                                                        raw_starts(stack, args.cases, args.concurrency, "B"))
            replay = await replays(http, operator, supervisor, auditor, args.replays)
        raw = (raw_before + raw_after) / 2
        p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
        replay_p95 = percentile(replay, 95) * 1000
        print()
        raw_latencies += more_raw_latencies
        print(f"  raw client.start_workflow      {raw_before:6.1f} / {raw_after:6.1f} per s (before / after), "
              f"latency p50 {percentile(raw_latencies, 50) * 1000:.0f} ms, p95 {percentile(raw_latencies, 95) * 1000:.0f} ms")
        print(f"  POST /cases                    {rate:6.1f} per s")
        print(f"  {'figure':<44}{'measured':>12}{'goal':>10}")
        print(f"  {'POST /cases rate / raw start rate':<44}{rate / raw:>12.2f}{'>= 0.9':>10}")
        print(f"  {'POST /cases latency p50 (ms)':<44}{p50:>12.0f}{'<= 100':>10}")
        print(f"  {'POST /cases latency p95 (ms)':<44}{p95:>12.0f}{'<= 250':>10}")
        print(f"  {f'POST /cases/{{id}}/replay p95 of {args.replays} (ms)':<44}{replay_p95:>12.0f}{'<= 50':>10}")
        print()
        roles = [role for role in ("benchmark", "api", "worker", "temporal") if role in processes]
        print(f"  CPU ms per case (each phase until the worker had opened its cases; load {os.getloadavg()[0]:.1f})")
        print(f"  {'phase':<18}" + "".join(f"{role:>11}" for role in roles) + f"{'all':>11}")
        for name, used in cpu.items():
            print(f"  {name:<18}" + "".join(f"{used[role]:>11.1f}" for role in roles) + f"{sum(used.values()):>11.1f}")
        raw_cpu = (sum(cpu["raw starts (A)"].values()) + sum(cpu["raw starts (B)"].values())) / 2
        intake_cpu = sum(cpu["POST /cases"].values())
        print(f"  CPU of an intake / CPU of a raw start: {intake_cpu / raw_cpu:.2f}")
        raw_is = f"raw start_workflow, concurrency {args.concurrency}"
        figures.write(args.json, [
            Figure("POST /cases rate", rate, "/s", goal=0.9 * raw, at_most=False, baseline=raw, baseline_is=raw_is),
            Figure("POST /cases latency p50", p50, "ms", goal=100, baseline=percentile(raw_latencies, 50) * 1000,
                   baseline_is=raw_is),
            Figure("POST /cases latency p95", p95, "ms", goal=250, baseline=percentile(raw_latencies, 95) * 1000,
                   baseline_is=raw_is),
            Figure("POST /cases CPU per case, all processes", intake_cpu, "ms", baseline=raw_cpu, baseline_is=raw_is),
            Figure(f"POST /cases/{{id}}/replay p95 of {args.replays}", replay_p95, "ms", goal=50),
        ])
        return 0
    finally:
        stack.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300, help="cases per phase (default 300)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--replays", type=int, default=20, help="replay calls (default 20)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE (for benchmarks/bench.py)")
    args = parser.parse_args(argv)
    if min(args.cases, args.concurrency, args.replays) < 1:
        parser.error("--cases, --concurrency and --replays must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
