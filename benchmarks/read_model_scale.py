"""Read-model routes at scale: p95 of every list, inbox, search and report route at 100,000 cases.

    python benchmarks/read_model_scale.py [--sqlite FILE] [--postgres URL] [--cases 100000]
                                          [--now 2026-12-02T13:00+08:00] [--calls 30] [--out FILE.md]

For each database given (default: a SQLite file in a temporary folder; PostgreSQL only with
`--postgres`), it seeds `--cases` cases with `disputeflow.db.seed` when the database holds none
(and says how long that took), or reuses what is there, and waits (at most a minute) for the CPUs
to be 85% idle over 2 s, the seed's processes and writes done. Then it builds the real FastAPI app
(`api.app.create_app`, lifespan entered: the schema is migrated as at start-up) and calls each
route through httpx's ASGI transport, as a province-level supervisor (region 37), the busiest
mediator or an operator: 3 warm-up calls, then `--calls` timed calls. It prints p50 and p95 per
route, the ratio of the p95 to the 50 ms goal, and the median CPU time this process spent per call
(on a machine shared with other work the wall times stretch with the load; the CPU time much less:
all of a call's work on SQLite, the client's part on PostgreSQL), as a Markdown table (also written
to `--out`).

These routes read the database only: no Temporal is needed (the app's Temporal gateway is never
used). Absolute times depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.auth import issue_token  # noqa: E402
from disputeflow.db import queries  # noqa: E402
from disputeflow.db.engine import create_schema, make_engine  # noqa: E402
from disputeflow.db.models import CaseRecord, CaseTaskRecord  # noqa: E402
from disputeflow.db.seed import seed  # noqa: E402
from disputeflow.settings import Settings  # noqa: E402
import figures  # noqa: E402  (benchmarks/figures.py, beside this script)
from figures import Figure  # noqa: E402

GOAL_MS = 50.0


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]  # nearest rank


def _prepare(url: str, cases: int, now: datetime) -> str:
    engine = make_engine(url)
    try:
        create_schema(engine)
        with Session(engine) as session:
            have = session.exec(select(func.count()).select_from(CaseRecord)).one()
        if have:
            return f"reused ({have} cases)"
        report = seed(engine, cases=cases, now=now)
        return f"seeded in {report.seconds:.1f} s: {report.summary()}"
    finally:
        engine.dispose()


def _routes(url: str) -> tuple[list[tuple[str, str, str | tuple[str, dict]]], dict[str, tuple[str, str, str]]]:
    """(label, who, path or (path, body) to POST) per route, with the values picked from the data itself."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            mediator = session.exec(
                select(CaseTaskRecord.assignee_id).where(CaseTaskRecord.status == "open",
                                                         CaseTaskRecord.assignee_id.is_not(None))
                .group_by(CaseTaskRecord.assignee_id).order_by(func.count().desc()).limit(1)).one()
            in_37 = session.exec(select(func.count()).select_from(CaseRecord)
                                 .where(CaseRecord.region_code.startswith("37"))).one()
            deep = session.exec(select(CaseRecord).where(CaseRecord.region_code.startswith("37"))
                                .order_by(CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())
                                .offset(min(5000, in_37 // 2)).limit(1)).one()  # a smaller seed: halfway
            sample = session.exec(select(CaseRecord).order_by(CaseRecord.case_id).offset(777).limit(1)).one()
            # Names of 2 and of 3 characters (a third of the generated names have 2).
            two, three = (session.exec(select(CaseRecord.caller_name).where(func.length(CaseRecord.caller_name) == n)
                                       .order_by(CaseRecord.case_id).offset(777).limit(1)).one() for n in (2, 3))
    finally:
        engine.dispose()
    phone = sample.caller_phone.removeprefix("+86")
    spaced = f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    cursor = queries.encode_cursor(deep)
    people = {"supervisor": ("sup-37", "supervisor", "37"), "mediator": (mediator, "mediator", mediator[4:10]),
              "operator": ("op-370211", "operator", "370211"),
              "county supervisor": ("sup-370211", "supervisor", "370211")}
    year = date.today().year
    # Searches by a caller's data go in a body (docs/data-protection.md): POST /cases/search.
    routes = [
        ("GET /cases (province, first page)", "supervisor", "/cases?region=37"),
        ("GET /cases (deep page: cursor 5,000 cases in)", "supervisor", f"/cases?region=37&cursor={cursor}"),
        ("GET /cases?stage=mediation&breached=true", "supervisor", "/cases?stage=mediation&breached=true"),
        ("POST /cases/search {q: <phone>}", "supervisor", ("/cases/search", {"q": phone})),
        ("POST /cases/search {phone: <phone, spaced>}", "supervisor", ("/cases/search", {"phone": spaced})),
        ("POST /cases/search {q: <a caller's full name>}", "supervisor", ("/cases/search", {"q": sample.caller_name})),
        ("POST /cases/search {q: <a 2-character name>}", "supervisor", ("/cases/search", {"q": two})),
        ("POST /cases/search {q: <a 3-character name>}", "supervisor", ("/cases/search", {"q": three})),
        # The given name of a 3-character name: a 2-character text a few dozen cases hold.
        ("POST /cases/search {q: <a rare 2-character text>}", "supervisor", ("/cases/search", {"q": three[1:]})),
        ("GET /cases?q=<text> (description or name)", "supervisor", "/cases?q=%E5%B7%A5%E8%B5%84"),  # 工资
        ("GET /cases?q=<text no case holds>", "supervisor", "/cases?q=%E4%BB%B2%E8%A3%81%E5%A7%94"),  # 仲裁委
        ("GET /cases?q=<2-character text no case holds>", "supervisor", "/cases?q=%E4%BB%B2%E8%A3%81"),  # 仲裁
        # Held by ~3% of the seeded cases.
        ("GET /cases?q=<text 3% of cases hold>", "supervisor", "/cases?q=%E7%94%B5%E5%8A%A8"),  # 电动
        # The same, asked by a county's supervisor: the county's cases only (7% of them).
        ("GET /cases?q=<text 3% of cases hold> (a county's supervisor)", "county supervisor",
         "/cases?q=%E7%94%B5%E5%8A%A8"),
        # A common word (20% of cases) that no case of the filter holds: the filter's every case is checked.
        ("GET /cases?q=<common text>&dispute_type=<none of them>", "supervisor",
         "/cases?q=%E5%B7%A5%E8%B5%84&dispute_type=neighbours"),
        ("GET /cases?q=<3% text>&dispute_type=<the largest, none of them>", "supervisor",
         "/cases?q=%E7%94%B5%E5%8A%A8&dispute_type=labour_wages"),
        ("GET /cases?urgency=emergency (a county's supervisor)", "county supervisor", "/cases?urgency=emergency"),
        ("GET /me/tasks (busiest mediator)", "mediator", "/me/tasks"),
        ("GET /me/tasks (operator, county inbox)", "operator", "/me/tasks"),
        ("GET /supervision/breaches", "supervisor", "/supervision/breaches"),
        ("GET /supervision/at-risk?within_hours=240", "supervisor", "/supervision/at-risk?within_hours=240"),
        ("GET /supervision/at-risk (24 h)", "supervisor", "/supervision/at-risk"),
        ("GET /supervision/compliance (one month)", "supervisor",
         f"/supervision/compliance?start={year}-11-01&end={year}-11-30"),
        ("GET /supervision/compliance?start=Jan 1&period=month (a year)", "supervisor",
         f"/supervision/compliance?start={year}-01-01&period=month"),
        ("GET /supervision/compliance?period=week (a year, by city)", "supervisor",
         f"/supervision/compliance?start={year}-01-01&period=week&group_by=4"),
        ("GET /supervision/compliance.csv (a year)", "supervisor",
         f"/supervision/compliance.csv?start={year}-01-01&period=month"),
    ]
    return routes, people


async def _measure(url: str, calls: int, plan: tuple | None = None) -> list[tuple[str, float, float, int, float]]:
    """`plan`: the routes and people of `_routes`, to call them on another database (the baseline)."""
    routes, people = plan or _routes(url)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, database_url=url, data_dir=Path(tmp),
                            temporal_address="127.0.0.1:9",  # never dialled by these routes
                            # one user calling every route 33 times: no per-user rate limits
                            rate_limit_per_minute=1_000_000, rate_limit_search_per_minute=1_000_000,
                            rate_limit_expensive_per_minute=1_000_000)
        app = create_app(settings)
        results = []
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                for label, who, path in routes:
                    user, role, region = people[who]
                    headers = {"Authorization": f"Bearer {issue_token(settings, user_id=user, role=role, region=region)}"}
                    samples, cpu = [], []
                    items = -1
                    for i in range(3 + calls):
                        started, used = time.perf_counter(), time.process_time()
                        if isinstance(path, tuple):
                            response = await http.post(path[0], json=path[1], headers=headers)
                        else:
                            response = await http.get(path, headers=headers)
                        elapsed = (time.perf_counter() - started) * 1000
                        if i >= 3:
                            cpu.append((time.process_time() - used) * 1000)
                        if response.status_code != 200:
                            raise SystemExit(f"{label}: {response.status_code} {response.text[:300]}")
                        if i >= 3:
                            samples.append(elapsed)
                        if i == 0:
                            body = response.json() if isinstance(path, tuple) or ".csv" not in path else None
                            items = (len(body.get("items", body.get("rows", []))) if isinstance(body, dict)
                                     else response.text.count("\n") - 1)
                    results.append((label, statistics.median(samples), p95(samples), items, statistics.median(cpu)))
    return results


def _table(name: str, prepared: str, results: list[tuple[str, float, float, int, float]]) -> str:
    lines = [f"### {name}", "", prepared, "",
             "| route | rows | p50 ms | p95 ms | p95 / 50 ms goal | CPU ms of this process, p50 |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, p50, p95_ms, items, cpu in results:
        lines.append(f"| {label} | {items} | {p50:.1f} | {p95_ms:.1f} | {p95_ms / GOAL_MS:.2f} | {cpu:.1f} |")
    return "\n".join(lines) + "\n"


def _empty_baseline(url: str, calls: int) -> dict[str, float]:
    """p95 of each route on an empty (migrated) database of the same kind, asked as on `url`: the
    reads' baseline. SQLite: a file in a temporary folder; PostgreSQL: a database made for it on the
    same server, dropped afterwards (without the right to create one: no baseline, said why)."""
    plan = _routes(url)
    if make_url(url).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            return _measure_empty(f"sqlite:///{(Path(tmp) / 'empty.db').as_posix()}", calls, plan)
    name = f"disputeflow_bench_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        print(f"no empty PostgreSQL baseline: cannot create a database ({type(exc.orig or exc).__name__})",
              file=sys.stderr)
        admin.dispose()
        return {}
    try:
        return _measure_empty(make_url(url).set(database=name).render_as_string(hide_password=False), calls, plan)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _measure_empty(empty: str, calls: int, plan: tuple) -> dict[str, float]:
    engine = make_engine(empty)
    try:
        create_schema(engine)
    finally:
        engine.dispose()
    return {label: p95_ms for label, _, p95_ms, _, _ in asyncio.run(_measure(empty, calls, plan))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", help="SQLite file (default: a new one in a temporary folder)")
    parser.add_argument("--postgres", help="PostgreSQL URL (an existing database; seeded when empty)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--now", type=datetime.fromisoformat, default=None,
                        help="end of the seeded year (default: now)")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--json", metavar="FILE", help="also write the p95s to FILE, with each route's p95 on an "
                        "empty database of the same kind as the baseline (for benchmarks/bench.py)")
    args = parser.parse_args()
    now = args.now or datetime.now(UTC)
    targets = []
    tmp = None
    if not args.no_sqlite:
        if args.sqlite is None:
            tmp = tempfile.TemporaryDirectory()
            args.sqlite = str(Path(tmp.name) / "scale.db")
        targets.append(("SQLite", f"sqlite:///{Path(args.sqlite).resolve().as_posix()}"))
    if args.postgres:
        targets.append(("PostgreSQL", args.postgres))
    found: list[Figure] = []
    out = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.calls} calls per route after 3 warm-up calls, "
           f"p95 = nearest rank; goal {GOAL_MS:.0f} ms.\n"]
    for name, url in targets:
        prepared = _prepare(url, args.cases, now)
        print(f"{name}: {prepared}", file=sys.stderr, flush=True)
        prepared += f"; {figures.settle()}"  # the seed's writeback and processes done
        before = os.getloadavg()
        results = asyncio.run(_measure(url, args.calls))
        after = os.getloadavg()
        prepared += (f"; load average (1 min) {before[0]:.1f} before and {after[0]:.1f} after the calls, "
                     f"on {os.cpu_count()} CPUs shared with other work")
        table = _table(name, prepared, results)
        print(table, flush=True)
        out.append(table)
        if args.json:
            empty = _empty_baseline(url, args.calls)
            for label, _, p95_ms, _, _ in results:
                found.append(Figure(f"{label}, {name}", p95_ms, "ms", goal=GOAL_MS, baseline=empty.get(label),
                                    baseline_is=f"the same route on an empty {name} database" if empty else ""))
    figures.write(args.json, found)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(out))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
