"""Breach lateness: how long after its due time a clock's breach is recorded, under load.

    python benchmarks/breach_lateness.py [--cases 200] [--spread 10] [--target-seconds 7.2]

(`make bench` runs it with the defaults.) It starts a real Temporal dev server (SQLite file in WAL
mode, in a temporary folder), a worker built by `worker.build_worker` in this process and a SQLite
read model, with a copy of the default policy whose emergency clock runs for `--target-seconds`
instead of an hour. Then:

1. baseline: a warm-up case, then `--baseline` cases one at a time (each alone when it breaches);
2. load: `--cases` emergency cases opened at an even pace over `--spread` seconds, so their due
   times spread over that long and their breaches overlap with other cases' starts and warnings.

For every emergency clock it measures, against the clock's due time:

- event lateness: the `clock_breached` event's `at` (workflow time when the breach was recorded)
  minus `due_at`: timer delivery plus the workflow task;
- read-model lateness: when a poll of the database (every `--poll` seconds) first saw the clock
  row with breached = true, minus `due_at`: adds the projection activity and the poll interval.

Absolute times drift on a shared machine, so the ratio of the loaded p99 to the baseline's p99
(measured in the same run) is the figure to compare between runs. The script ends by itself: it
gives up waiting after `--timeout` seconds, reports what it has, and exits 1 if clocks are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

# This checkout's code, whatever the environment has installed (an editable install points at one
# checkout; a benchmark run from another git worktree would otherwise run that one's workflows).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from disputeflow.contracts import workflow_id_for  # noqa: E402
from disputeflow.db.engine import create_schema, make_engine, write_session
from disputeflow.db.models import CaseEventRecord, CaseRecord, ClockRecord
from disputeflow.db.reference import seed_reference
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import load_policy
from disputeflow.pinning import PolicyPins
from disputeflow.progress import Progress
from disputeflow.settings import DEFAULT_POLICY_FILE, DEFAULT_REFERENCE_FILE, Settings
from disputeflow.temporal import SEARCH_ATTRIBUTES, data_converter
from worker import build_worker
from workflows.case import CaseWorkflowV2
import figures  # benchmarks/figures.py, beside this script
from figures import Figure

CLOCK = "emergency_response"
TASK_QUEUE = "bench-cases"
BARE_QUEUE = "bench-bare"


@workflow.defn(sandboxed=False)
class BareTimer:
    """The baseline: a workflow that does nothing but wait until a due time set when it was started
    (as a case's clock is due from its registration) and say how late its timer fired (workflow
    time after the wait, as a case's `clock_breached` event records it, minus the due time)."""

    @workflow.run
    async def run(self, due_iso: str) -> float:
        due = datetime.fromisoformat(due_iso)
        await workflow.sleep(max(0.001, (due - workflow.now()).total_seconds()))
        return (workflow.now() - due).total_seconds()


def rss_mib() -> float:
    """This process's resident memory (the worker runs in it, with the driver)."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return math.nan


# -- Setup -------------------------------------------------------------------------------------


def temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        sys.exit("the `temporal` CLI was not found: install the project first (make venv)")
    return found


def write_fast_policy(folder: Path, target_seconds: float) -> Path:
    """The default policy with the emergency clock shortened to `target_seconds`."""
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    hours = target_seconds / 3600
    block = re.compile(r'(clock = "emergency_response"\n(?:(?!\[\[).*\n)*?)target = \{[^}\n]*\}')
    text, found = block.subn(
        lambda m: m.group(1) + f'target = {{ amount = {hours!r}, unit = "calendar_hours" }}', text, count=1
    )
    if found != 1:
        sys.exit(f"{DEFAULT_POLICY_FILE}: no target line for the {CLOCK} clock to shorten")
    text = re.sub(r'^version = "([^"]*)"', r'version = "\1-bench"', text, count=1, flags=re.MULTILINE)
    path = folder / "policy.toml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)  # fails loudly if the edit broke the file
    rule = next(r for r in policy.clocks if r.clock == CLOCK and r.when.urgencies)
    assert rule.target.amount == hours, rule.target
    return path


def intake(index: int, urgency: str = "emergency") -> Intake:
    return Intake.model_validate({
        "channel": "hotline",
        "caller": {"name": "张三", "phone": "13800138000"},
        "region_code": "370102",
        "category": "dispute",
        "dispute_type": "neighbours",
        "urgency": urgency,
        "description": f"邻里纠纷，对方扬言动手，情况紧急（压测 {index}）",
    })


# -- Open cases in the background, and intake while the load runs ---------------------------------


async def start_case(client: Client, pins: PolicyPins, case_id: str, urgency: str, index: int) -> None:
    start = pins.start(case_id, intake(index, urgency), registered_at=datetime.now(UTC), registered_by=None)
    await client.start_workflow(CaseWorkflowV2.run, start, id=workflow_id_for(case_id), task_queue=TASK_QUEUE)


def projected(engine: Engine, prefix: str) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(CaseRecord)
                            .where(CaseRecord.case_id.startswith(prefix, autoescape=True))).one()


async def open_background(client: Client, engine: Engine, pins: PolicyPins, count: int, concurrency: int,
                          deadline: float, stats: dict) -> None:
    """`count` normal cases (their clocks run for days: they stay open), started `concurrency` at a
    time with the raw client; then wait until the read model holds them all (or the deadline: the
    load then runs while the rest are still being projected, and the report says how many were)."""
    began = time.monotonic()
    queue = iter(range(count))
    bar = Progress(count, "open cases: started", unit="cases")

    async def starter() -> None:
        for index in queue:
            await start_case(client, pins, f"O{index:06d}", "normal", index)
            bar.update(1)

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    bar.close()
    stats["open_start_seconds"] = time.monotonic() - began
    while time.monotonic() < deadline:
        done = await asyncio.to_thread(projected, engine, "O")
        if done >= count:
            break
        await asyncio.sleep(1.0)
    stats["open_projected"] = await asyncio.to_thread(projected, engine, "O")
    stats["open_seconds"] = time.monotonic() - began


async def keep_intake(client: Client, pins: PolicyPins, rate: float, stop: asyncio.Event, stats: dict) -> None:
    """Normal cases at `rate` a second while the load runs: how long each start took."""
    latencies: list[float] = stats.setdefault("intake_latency", [])
    began = time.monotonic()
    index = 0
    pending = []

    async def one(i: int) -> None:
        t0 = time.monotonic()
        await start_case(client, pins, f"I{i:06d}", "normal", i)
        latencies.append(time.monotonic() - t0)

    while not stop.is_set():
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                break
            except TimeoutError:
                pass
        pending.append(asyncio.create_task(one(index)))
        index += 1
    await asyncio.gather(*pending)
    stats["intake_seconds"] = time.monotonic() - began
    latencies.sort()


async def bare_timers(client: Client, count: int, interval: float, seconds: float) -> list[float]:
    """The baseline under the same load: `count` bare timers of `seconds`, started `interval` apart."""
    began = time.monotonic()
    handles = []
    for index in range(count):
        delay = began + index * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        due = datetime.now(UTC) + timedelta(seconds=seconds)
        handles.append(await client.start_workflow(BareTimer.run, due.isoformat(), task_queue=BARE_QUEUE,
                                                   id=f"bare-{index:05d}-{time.time_ns()}"))
    return sorted(await asyncio.gather(*(h.result() for h in handles)))


# -- One phase: open cases, watch their clocks breach --------------------------------------------


@dataclass
class Phase:
    label: str
    prefix: str  # case ids of this phase start with it
    count: int
    interval: float  # seconds between case starts
    start_seconds: float = 0.0  # how long opening all cases took
    seen_breached: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # clock -> (due, seen)
    event_lateness: list[float] = field(default_factory=list)
    db_lateness: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.seen_breached) >= self.count


def poll_breached(engine: Engine, phase: Phase) -> None:
    """Note every emergency clock of the phase that now shows breached, with when it was first seen."""
    with Session(engine) as session:
        rows = session.exec(
            select(ClockRecord.clock_id, ClockRecord.due_at)
            .where(ClockRecord.name == CLOCK, ClockRecord.breached.is_(True),
                   ClockRecord.case_id.startswith(phase.prefix, autoescape=True))
        ).all()
    seen = datetime.now(UTC)  # after the query returned: the row was visible by then at the latest
    for clock_id, due_at in rows:
        phase.seen_breached.setdefault(clock_id, (due_at, seen))


def collect_events(engine: Engine, phase: Phase) -> None:
    with Session(engine) as session:
        events = session.exec(
            select(CaseEventRecord)
            .where(CaseEventRecord.type == "clock_breached",
                   CaseEventRecord.case_id.startswith(phase.prefix, autoescape=True))
        ).all()
    phase.event_lateness = sorted(
        (e.at - datetime.fromisoformat(e.data["due_at"])).total_seconds() for e in events if e.data.get("clock") == CLOCK
    )
    phase.db_lateness = sorted((seen - due).total_seconds() for due, seen in phase.seen_breached.values())


async def run_phase(client: Client, engine: Engine, phase: Phase, *, pins: PolicyPins, poll: float,
                    deadline: float) -> None:
    async def open_cases() -> None:
        began = time.monotonic()
        starts = []
        for index in range(phase.count):
            delay = began + index * phase.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            case_id = f"{phase.prefix}{index:05d}"
            start = pins.start(case_id, intake(index), registered_at=datetime.now(UTC), registered_by=None)
            starts.append(asyncio.create_task(client.start_workflow(
                CaseWorkflowV2.run, start, id=workflow_id_for(case_id), task_queue=TASK_QUEUE,
            )))
        await asyncio.gather(*starts)
        phase.start_seconds = time.monotonic() - began

    bar_seen = [0]
    opener = asyncio.create_task(open_cases())
    bar = Progress(phase.count, f"{phase.label}: breaches seen", unit="cases")  # on a terminal only
    try:
        while time.monotonic() < deadline:
            await asyncio.to_thread(poll_breached, engine, phase)
            bar.update(len(phase.seen_breached) - bar_seen[0])
            bar_seen[0] = len(phase.seen_breached)
            if phase.complete and opener.done():
                break
            await asyncio.sleep(poll)
        if opener.done():
            opener.result()  # a failed start is an error, not a slow result
    finally:
        bar.close()
        opener.cancel()
    collect_events(engine, phase)


# -- Report ------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def fmt(seconds: float) -> str:
    return "     n/a" if math.isnan(seconds) else f"{seconds * 1000:8.0f}"


def line(name: str, values: list[float]) -> str:
    cells = "".join(fmt(percentile(values, p)) for p in (50, 95, 99, 100))
    return f"  {name:<26}{cells}   (n={len(values)})"


def ratio(loaded: list[float], base: list[float]) -> str:
    top, bottom = percentile(loaded, 99), percentile(base, 99)
    if math.isnan(top) or math.isnan(bottom) or bottom <= 0:
        return "n/a"
    return f"{top / bottom:.1f}x"


def report(args: argparse.Namespace, baseline: Phase, load: Phase, stats: dict) -> None:
    print()
    print(f"Breach lateness of the {CLOCK} clock (target {args.target_seconds:g} s), "
          f"dev server on SQLite+WAL, worker in this process, {os.cpu_count()} CPUs")
    if args.open:
        print(f"  open cases: {args.open} started in {stats['open_start_seconds']:.1f} s "
              f"({args.open / stats['open_start_seconds']:.0f}/s, {args.start_concurrency} at a time), "
              f"{stats['open_projected']} in the read model after {stats['open_seconds']:.1f} s")
    print(f"  load: {load.count} cases opened over {load.start_seconds:.1f} s; "
          f"baseline: {baseline.count} cases alone, {baseline.interval:g} s apart")
    print(f"  {'milliseconds after due':<26}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    print(line(f"event, N={load.count}", load.event_lateness))
    print(line(f"read model, N={load.count}", load.db_lateness))
    print(line("event, N=1 (baseline)", baseline.event_lateness))
    print(line("read model, N=1 (baseline)", baseline.db_lateness))
    bare = stats.get("bare", [])
    if bare:
        print(line(f"bare timer, N={len(bare)} (baseline)", bare))
    print(f"  p99(N={load.count}) / p99(N=1): event {ratio(load.event_lateness, baseline.event_lateness)}, "
          f"read model {ratio(load.db_lateness, baseline.db_lateness)}")
    if bare:
        print(f"  p99 / p99 of the bare timers under the same load: event {ratio(load.event_lateness, bare)}, "
              f"read model {ratio(load.db_lateness, bare)}")
    intake_latency = stats.get("intake_latency", [])
    if intake_latency:
        print(f"  intake during the load: {len(intake_latency)} cases in {stats['intake_seconds']:.1f} s "
              f"({len(intake_latency) / stats['intake_seconds']:.1f}/s asked {args.intake_rate:g}/s); start "
              f"p50 {percentile(intake_latency, 50) * 1000:.0f} ms, p99 {percentile(intake_latency, 99) * 1000:.0f} ms")
    print(f"  process RSS (driver + worker): max {stats.get('rss_max', math.nan):.0f} MiB; "
          f"worker cache: {args.cache if args.cache is not None else 'SDK default (1000)'} workflows; "
          f"slots: workflow tasks {args.workflow_slots or 'default'}, activities {args.activity_slots or 'default'}")
    print(f"  load average (1 min): {stats.get('load_before', math.nan):.1f} before the load phase, "
          f"{stats.get('load_after', math.nan):.1f} after")
    print("  goals (issue 13): event p99 <= 1000 ms, read model (board) p99 <= 2000 ms, RSS <= 1024 MiB")
    print(f"  read-model figures include up to {args.poll * 1000:.0f} ms of polling delay")
    for phase in (baseline, load):
        if not phase.complete:
            print(f"  INCOMPLETE: {phase.label}: {len(phase.seen_breached)} of {phase.count} breaches seen "
                  f"within {args.timeout:g} s")


# -- Main --------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.timeout
    folder = Path(tempfile.mkdtemp(prefix="disputeflow-bench-"))
    env: WorkflowEnvironment | None = None
    engine: Engine | None = None
    try:
        policy_file = write_fast_policy(folder, args.target_seconds)
        database_url = f"sqlite:///{(folder / 'readmodel.db').as_posix()}"
        engine = make_engine(database_url)
        create_schema(engine)
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        # the same database for the read model and the cases' data keys, as in production
        settings = Settings(policy_file=policy_file, data_dir=folder, database_url=database_url,
                            worker_max_cached_workflows=args.cache)
        env = await WorkflowEnvironment.start_local(
            # payloads encrypted, as in production; --plain-payloads measures the build without it
            data_converter=pydantic_data_converter if args.plain_payloads else data_converter(settings),
            dev_server_existing_path=temporal_cli(),
            dev_server_database_filename=str(folder / "temporal.db"),
            dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
            search_attributes=SEARCH_ATTRIBUTES,
        )
        worker = build_worker(env.client, settings, engine, task_queue=TASK_QUEUE,
                              workflow_task_slots=args.workflow_slots, activity_slots=args.activity_slots)
        bare_worker = Worker(env.client, task_queue=BARE_QUEUE, workflows=[BareTimer],
                             workflow_runner=UnsandboxedWorkflowRunner())
        stats: dict = {}
        warmup = Phase("warm-up", "W", 1, 0.0)
        baseline = Phase("baseline", "B", args.baseline, args.baseline_interval)
        load = Phase("load", "N", args.cases, args.spread / args.cases)
        async with worker, bare_worker:
            print(f"dev server and worker up in {time.monotonic() - started:.1f} s; data in {folder}", flush=True)
            pins = PolicyPins(policy_file)
            await run_phase(env.client, engine, warmup, pins=pins, poll=args.poll, deadline=deadline)
            print(f"warm-up done; baseline: {baseline.count} cases alone", flush=True)
            await run_phase(env.client, engine, baseline, pins=pins, poll=args.poll, deadline=deadline)
            if args.open:
                print(f"baseline done; opening {args.open} cases in the background", flush=True)
                await open_background(env.client, engine, pins, args.open, args.start_concurrency,
                                      time.monotonic() + args.open_wait, stats)
                deadline = time.monotonic() + args.timeout  # the load's own time from here
                print(f"{stats['open_projected']} open cases in the read model after {stats['open_seconds']:.1f} s",
                      flush=True)
            print(f"load: {load.count} cases over {args.spread:g} s"
                  + (f", intake {args.intake_rate:g}/s" if args.intake_rate else "")
                  + (", bare timers alongside" if args.bare else ""), flush=True)
            stop = asyncio.Event()
            stats["rss_max"] = rss_mib()
            stats["load_before"] = os.getloadavg()[0]

            async def sample_rss() -> None:
                while not stop.is_set():
                    stats["rss_max"] = max(stats["rss_max"], rss_mib())
                    await asyncio.sleep(0.5)

            extra = [asyncio.create_task(sample_rss())]
            if args.intake_rate:
                extra.append(asyncio.create_task(keep_intake(env.client, pins, args.intake_rate, stop, stats)))
            bare_task = (asyncio.create_task(bare_timers(env.client, load.count, load.interval, args.target_seconds))
                         if args.bare else None)
            try:
                await run_phase(env.client, engine, load, pins=pins, poll=args.poll, deadline=deadline)
                if bare_task is not None:
                    stats["bare"] = await asyncio.wait_for(bare_task, max(1.0, deadline - time.monotonic()))
            finally:
                stop.set()
                await asyncio.gather(*extra, return_exceptions=False)
                stats["load_after"] = os.getloadavg()[0]
                stats["rss_max"] = max(stats["rss_max"], rss_mib())
        report(args, baseline, load, stats)
        bare = stats.get("bare", [])
        bare_p99 = percentile(bare, 99) * 1000 if bare else None
        bare_is = f"a bare workflow's timer under the same load ({len(bare)} of them)"
        among = f", {args.open} open cases" if args.open else ""
        figures.write(args.json, [
            Figure(f"breach recorded after due, p99 ({load.count} emergencies{among})",
                   percentile(load.event_lateness, 99) * 1000, "ms", goal=1000, baseline=bare_p99, baseline_is=bare_is),
            Figure(f"breach on the board after due, p99 ({load.count} emergencies{among})",
                   percentile(load.db_lateness, 99) * 1000, "ms", goal=2000, baseline=bare_p99, baseline_is=bare_is),
            Figure("worker process RSS, max", stats.get("rss_max", math.nan), "MiB", goal=1024),
        ])
        print(f"total {time.monotonic() - started:.1f} s")
        return 0 if baseline.complete and load.complete else 1
    finally:
        if env is not None:
            await env.shutdown()
        if engine is not None:
            engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200, help="cases opened under load (default 200)")
    parser.add_argument("--spread", type=float, default=10.0,
                        help="seconds over which the loaded cases are opened, and so fall due (default 10)")
    parser.add_argument("--target-seconds", type=float, default=7.2,
                        help="the emergency clock's target in the benchmark policy (default 7.2 = 0.002 h)")
    parser.add_argument("--baseline", type=int, default=3, help="baseline cases, each alone (default 3)")
    parser.add_argument("--baseline-interval", type=float, default=1.5,
                        help="seconds between baseline cases (default 1.5)")
    parser.add_argument("--open", type=int, default=0,
                        help="normal cases opened (and left open) before the load, to run it among them (default 0)")
    parser.add_argument("--open-wait", type=float, default=600.0,
                        help="at most this many seconds for the read model to hold the --open cases (default 600)")
    parser.add_argument("--start-concurrency", type=int, default=32,
                        help="starts in flight at once while opening --open cases (default 32)")
    parser.add_argument("--intake-rate", type=float, default=0.0,
                        help="normal cases started per second while the load runs (default 0: none)")
    parser.add_argument("--bare", action="store_true",
                        help="also run bare timers (a workflow with only the same timer) alongside the load: "
                             "the baseline for the timer's own lateness under the same load")
    parser.add_argument("--cache", type=int, default=None,
                        help="the worker's max cached workflows (default: the SDK's, 1000)")
    parser.add_argument("--workflow-slots", type=int, default=None,
                        help="the worker's max concurrent workflow tasks (default: build_worker's)")
    parser.add_argument("--activity-slots", type=int, default=None,
                        help="the worker's max concurrent activities (default: build_worker's)")
    parser.add_argument("--plain-payloads", action="store_true",
                        help="do not encrypt payloads (to measure what encryption costs)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE (for benchmarks/bench.py)")
    parser.add_argument("--poll", type=float, default=0.05, help="read-model poll interval, seconds (default 0.05)")
    parser.add_argument("--timeout", type=float, default=100.0,
                        help="give up waiting for breaches after this many seconds in all, not counting "
                             "the opening of --open cases (default 100)")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.baseline < 1:
        parser.error("--cases and --baseline must be at least 1")
    if args.target_seconds <= 0 or args.spread < 0 or args.poll <= 0:
        parser.error("--target-seconds and --poll must be positive, --spread not negative")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
