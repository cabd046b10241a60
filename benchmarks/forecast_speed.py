"""How long a forecast of 1,000 cases over 8 simulated weeks takes, against the platform's floor.

    python benchmarks/forecast_speed.py [--weeks 8] [--per-week 125] [--rounds 1] [--worker-process]

1. **forecast**: the staffing forecast of `RESULTS.md` (region 370102, 8 weeks from 2027-01-04,
   4 mediators at 4 sessions a day, 125 cases a week: about 1,000 cases), exactly as `disputeflow
   forecast` runs it: the real `CaseWorkflowV2` on a private time-skipping test server, simulated
   people acting through the real `act` update (`--worker-process`: its workflow tasks in a child
   process, `disputeflow/forecast/worker.py`). The goal is <= 60 s.
2. **baseline**: on a new private test server, the same number of bare workflows, started at the
   same simulated instants, each sent the same updates at the same instants as its case was in
   (1), each update running one no-op activity before it answers (the case's snapshot), each
   workflow holding one timer to the end of the period; one worker in this process. It is the
   floor of the same work on the same platform: starts, updates with an activity each, time
   skipped over the same weeks.

It prints both times and their ratio (forecast / baseline), with the load average (`uptime`)
before and after each phase: the machine is shared, and the ratio is the figure that travels.
`--rounds 2` repeats the pair. Every loop is bounded; each test server is stopped by the SDK.

`--profile FILE` profiles the forecast with cProfile on the main thread's CPU clock
(`time.thread_time`: the driver, the stand-ins and the workflow tasks; not the SDK's Rust threads,
whose share it prints beside), writes the stats to FILE and prints the top functions; the baseline
is then skipped. cProfile about doubles the CPU it measures: compare profiles with profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import uuid
from datetime import date, datetime, timedelta

from temporalio import activity, workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from disputeflow.forecast.simulation import Simulation, shanghai, test_server_path
from disputeflow.forecast.spec import ForecastSpec
from disputeflow.settings import DEFAULT_POLICY_FILE
import figures  # benchmarks/figures.py, beside this script
from figures import Figure

GOAL_SECONDS = 60.0
MIX = {("dispute", "labour_wages"): 40, ("dispute", "neighbours"): 20, ("dispute", "marriage_family"): 8,
       ("consultation", "other"): 45, ("legal_aid", "labour_wages"): 12}  # 125 a week


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def spec_for(weeks: int, per_week: float) -> ForecastSpec:
    scale = per_week / sum(MIX.values())
    return ForecastSpec(region_code="370102", start=date(2027, 1, 4), weeks=weeks, runs=1,
                        staff={"mediator": {"count": 4, "per_day": 4}},
                        arrivals=[{"category": c, "dispute_type": d, "per_week": n * scale} for (c, d), n in MIX.items()])


# -- The baseline: bare workflows doing the same starts and updates ---------------------------------


@activity.defn(name="snapshot")
async def snapshot(n: int) -> int:
    return n


@workflow.defn(name="BareCase", sandboxed=False)
class BareCase:
    def __init__(self) -> None:
        self.updates = 0

    @workflow.run
    async def run(self, seconds: float) -> int:
        try:
            await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.updates

    @workflow.update
    async def act(self, n: int) -> int:
        await workflow.execute_activity(snapshot, n, start_to_close_timeout=timedelta(seconds=30))
        self.updates += 1
        return self.updates


async def baseline(starts: list[tuple[timedelta, str]], acts: list[tuple[timedelta, str]], length: timedelta,
                   concurrency: int = 64) -> float:
    """Starts and updates at the same offsets from the period's start as in the forecast; seconds taken."""
    began = time.monotonic()
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_path())
    try:
        queue = f"bare-{uuid.uuid4().hex[:8]}"
        origin = await env.get_current_time() + timedelta(minutes=1)
        async with Worker(env.client, task_queue=queue, workflows=[BareCase], activities=[snapshot],
                          workflow_runner=UnsandboxedWorkflowRunner(), max_cached_workflows=len(starts) + 100,
                          max_concurrent_activities=400, max_concurrent_workflow_tasks=16, debug_mode=True):
            handles = {}
            sem = asyncio.Semaphore(concurrency)
            instants = sorted({at for at, _ in starts} | {at for at, _ in acts})
            by_start: dict[timedelta, list[str]] = {}
            by_act: dict[timedelta, list[str]] = {}
            for at, case in starts:
                by_start.setdefault(at, []).append(case)
            for at, case in acts:
                by_act.setdefault(at, []).append(case)

            async def start(case: str, at: timedelta) -> None:
                async with sem:
                    handles[case] = await env.client.start_workflow(
                        BareCase.run, (length - at).total_seconds(), id=f"bare-{case}", task_queue=queue)

            async def act(case: str, n: int) -> None:
                async with sem:
                    await handles[case].execute_update(BareCase.act, n)

            for at in instants:
                delta = origin + at - await env.get_current_time()
                if delta > timedelta(0):
                    await env.sleep(delta)
                await asyncio.gather(*(start(c, at) for c in by_start.get(at, [])))
                await asyncio.gather(*(act(c, i) for i, c in enumerate(by_act.get(at, []))))
            delta = origin + length - await env.get_current_time()
            if delta > timedelta(0):
                await env.sleep(delta)
    finally:
        await env.shutdown()
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--per-week", type=float, default=125)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker-process", action="store_true",
                        help="the forecast's workflow tasks in a child process (both cores; more CPU in all)")
    parser.add_argument("--json", metavar="FILE", help="also write the figure to FILE (for benchmarks/bench.py)")
    parser.add_argument("--profile", metavar="FILE", help="profile the forecast (main thread's CPU) into FILE; no baseline")
    args = parser.parse_args()
    spec = spec_for(args.weeks, args.per_week)
    print(f"forecast of {spec.cases_per_run():.0f} cases (expected) over {spec.weeks} weeks; goal <= {GOAL_SECONDS:.0f} s; "
          f"{os.cpu_count()} CPUs")
    for round_ in range(args.rounds):
        print(f"[round {round_ + 1}] before the forecast: {load()}")
        sim = Simulation(spec, policy=DEFAULT_POLICY_FILE, worker_process=args.worker_process)
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        began, main_cpu, process_cpu = time.monotonic(), time.thread_time(), time.process_time()
        if profile is not None:
            profile.enable()
        result = asyncio.run(sim.run())
        if profile is not None:
            profile.disable()
        seconds = time.monotonic() - began
        main_cpu, process_cpu = time.thread_time() - main_cpu, time.process_time() - process_cpu
        t = result.timings
        print(f"[round {round_ + 1}] forecast ({'child process' if sim.worker_process else 'one process'}): "
              f"{result.cases} cases, {result.actions} actions, {seconds:.1f} s "
              f"({'; '.join(f'{k} {v:.1f} s' for k, v in t.items())}); lost {result.lost}; after: {load()}")
        print(f"[round {round_ + 1}] CPU of this process {process_cpu:.1f} s: main thread {main_cpu:.1f} s, "
              f"other threads (the SDK's core) {process_cpu - main_cpu:.1f} s")
        if profile is not None:
            profile.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)
            continue
        origin = shanghai(spec.start, datetime.min.time()) + sim.offset
        starts = [(c.registered_at - origin, c.case_id) for s in sim.world.scenarios for c in s.cases if c.started]
        acts = [(at - origin, case) for at, case in sim.acted]
        bare = asyncio.run(baseline(starts, acts, timedelta(weeks=spec.weeks)))
        print(f"[round {round_ + 1}] baseline: {len(starts)} bare workflows, {len(acts)} updates, {bare:.1f} s; "
              f"after: {load()}")
        verdict = "within" if seconds <= GOAL_SECONDS else "NOT within"
        print(f"[round {round_ + 1}] forecast {seconds:.1f} s ({verdict} the {GOAL_SECONDS:.0f} s goal), "
              f"baseline {bare:.1f} s, ratio forecast/baseline {seconds / bare:.2f}")
        figures.write(args.json, [Figure(
            f"forecast of {result.cases} cases over {spec.weeks} weeks", seconds, "s", goal=GOAL_SECONDS,
            baseline=bare, baseline_is="bare workflows making the same starts and updates on a test server")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
