"""Projection cost in isolation: the CPU time of writing one case snapshot into a SQLite read model.

    python benchmarks/projection_cost.py [--cases 300] [--profile 25] [--plain]

No Temporal here: the snapshots are made by the pure rules (`disputeflow.domain.lifecycle`), as the
case workflow makes them, and written by the projection activity (`CaseActivities.project_case`:
the case's data key, then `apply_projection` in one write transaction) into a fresh SQLite file.
Each case gives three snapshots, the ones the breach benchmark's emergency cases give: opened, its
clock's warning, its breach. First `--warm` cases fill the database (so the tables are not empty),
then `--cases` cases are timed, snapshot by snapshot, with `time.thread_time()` (the CPU of the
writing thread: what another engineer's test run on the same cores does not change) and the wall
clock beside it. `--profile N` lists the functions taking the most CPU time (cProfile, with
`time.thread_time` as its clock) over the first N of the timed cases.

Prints one line per kind of snapshot and a total: CPU ms per projection (median, p95, mean),
wall ms, projections per CPU second.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.case import CaseActivities
from disputeflow.case_keys import CaseKeyStore
from disputeflow.contracts import PinPolicyInput, Projection, workflow_id_for
from disputeflow.db.engine import create_schema, make_engine
from disputeflow.domain import lifecycle
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CaseFacts
from disputeflow.domain.process.deadlines import fire_alarms, next_alarm_at
from disputeflow.settings import DEFAULT_POLICY_FILE

START = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
CALL = {
    "channel": "hotline", "caller": {"name": "张三", "phone": "13800138000"}, "region_code": "370102",
    "category": "dispute", "dispute_type": "labour_wages", "special_groups": ["migrant_worker"],
    "description": "工地拖欠三个月工资，包工头失联。", "urgency": "emergency",
}


def snapshot(state, now: datetime) -> Projection:
    """What the case workflow's `_snapshot` hands the activity: the events not yet projected."""
    events = [e for e in state.timeline if e.seq > state.projected_seq]
    p = Projection(
        case_id=state.case_id, workflow_id=workflow_id_for(state.case_id), intake=state.intake, stage=state.stage,
        phase=state.phase.value, mediator_id=state.mediator.id if state.mediator else None,
        lawyer_id=state.lawyer.id if state.lawyer else None, opened_at=state.opened_at, updated_at=now,
        closed_at=state.closed_at, final_outcome=state.final_outcome, satisfaction=state.satisfaction,
        policy_version=state.policy.version, breached=state.breached, tasks=lifecycle.open_tasks(state),
        clocks=state.clocks, events=events, notifications=state.outbox,
    )
    if events:
        state.projected_seq = events[-1].seq
    state.outbox = []
    # Through the payload converter's round trip, as the activity receives it.
    return Projection.model_validate_json(p.model_dump_json())


def case_snapshots(n: int, offset: int, acts: CaseActivities) -> list[tuple[str, Projection]]:
    intake = Intake.model_validate(CALL)
    facts = CaseFacts(region_code=intake.region_code, category=intake.category, dispute_type=intake.dispute_type,
                      urgency=intake.urgency, special_groups=intake.special_groups)
    policy = acts.pin_case_policy(PinPolicyInput(facts=facts, opened_on=date(2026, 11, 30)))
    cal = BusinessCalendar(policy.calendar)
    out = []
    for i in range(offset, offset + n):
        opened = START + timedelta(seconds=i)
        state = lifecycle.open_case(f"370102-20261130-{i:05d}", intake, policy, opened, cal)
        out.append(("opened", snapshot(state, opened)))
        for kind in ("warning", "breach"):
            at = next_alarm_at(state)
            assert at is not None and fire_alarms(state, at, cal)
            out.append((kind, snapshot(state, at)))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300, help="timed cases, 3 projections each (default 300)")
    parser.add_argument("--warm", type=int, default=200, help="cases written first, not timed (default 200)")
    parser.add_argument("--profile", type=int, default=0, help="profile the first N timed cases (default: none)")
    parser.add_argument("--plain", action="store_true", help="no case data keys (audit text not encrypted)")
    parser.add_argument("--top", type=int, default=30, help="profile lines to print (default 30)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="projcost-") as folder:
        engine = make_engine(f"sqlite:///{folder}/read.db")
        create_schema(engine)
        keys = None if args.plain else CaseKeyStore(lambda: engine, [("bench", os.urandom(32))])
        acts = CaseActivities(engine, DEFAULT_POLICY_FILE, case_keys=keys)
        for _, p in case_snapshots(args.warm, 0, acts):
            acts.project_case(p)
        timed = case_snapshots(args.cases, args.warm, acts)
        cpu: dict[str, list[float]] = {}
        wall: dict[str, list[float]] = {}
        profiled = args.profile * 3
        profiler = cProfile.Profile(time.thread_time) if profiled else None
        for index, (kind, p) in enumerate(timed):
            if profiler is not None and index < profiled:
                profiler.enable()
            c0, w0 = time.thread_time(), time.perf_counter()
            acts.project_case(p)
            c1, w1 = time.thread_time(), time.perf_counter()
            if profiler is not None and index < profiled:
                profiler.disable()
            cpu.setdefault(kind, []).append((c1 - c0) * 1000)
            wall.setdefault(kind, []).append((w1 - w0) * 1000)
        cpu["all"] = [v for k in ("opened", "warning", "breach") for v in cpu[k]]
        wall["all"] = [v for k in ("opened", "warning", "breach") for v in wall[k]]
        print(f"{args.cases} cases x 3 projections after {args.warm} warm-up cases; case keys: {not args.plain}; "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"{'snapshot':<9} {'n':>5} {'CPU ms p50':>11} {'p95':>7} {'mean':>7} {'wall ms p50':>12} "
              f"{'proj/CPU s':>11}")
        for kind in ("opened", "warning", "breach", "all"):
            values = cpu[kind]
            mean = statistics.fmean(values)
            print(f"{kind:<9} {len(values):>5} {statistics.median(values):>11.2f} {pct(values, 0.95):>7.2f} "
                  f"{mean:>7.2f} {statistics.median(wall[kind]):>12.2f} {1000 / mean:>11.0f}")
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
