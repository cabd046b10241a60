"""`disputeflow seed`: fill an empty read model with a generated year of cases, for load tests."""

from __future__ import annotations

import sys
from datetime import datetime
from types import SimpleNamespace

import click

from disputeflow.cli import command
from disputeflow.progress import Progress


def _moment(ctx: click.Context, param: click.Parameter, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{text!r}: give a time zone, e.g. 2026-12-01T10:00+08:00")
    return moment


@command("seed", "Fill an empty read model with a generated year of cases (load tests, benchmarks). "
                 "Never against production: the cases have no workflows.")
@click.option("--cases", type=int, default=100_000, show_default=True, help="how many cases")
@click.option("--seed", type=int, default=12348, show_default=True,
              help="random seed: the same seed and --now give the same data")
@click.option("--now", callback=_moment, help="the end of the generated year, ISO 8601 with a zone (default: now)")
@click.option("--days", type=int, default=365, show_default=True, help="cases open over this many days before --now")
@click.option("--database-url", help="SQLAlchemy URL of the database to fill (default: DATABASE_URL, else the data "
                                     "folder's SQLite file); it is migrated first and must hold no cases")
def seed(args: SimpleNamespace) -> int:
    from disputeflow.db.engine import create_schema, make_engine
    from disputeflow.db.seed import SeedError, seed as run
    from disputeflow.settings import get_settings

    if args.cases < 1:
        print("--cases must be at least 1", file=sys.stderr)
        return 2
    settings = get_settings()
    url = args.database_url or settings.effective_database_url
    engine = make_engine(url)
    bar = Progress(args.cases, "seeding", unit="cases")
    seeded = 0

    def progress(n: int) -> None:  # n: cases written so far
        nonlocal seeded
        if bar.drawn:
            bar.update(n - seeded)
            seeded = n
        else:
            print(f"  {n} cases", file=sys.stderr, flush=True)

    try:
        create_schema(engine)
        report = run(engine, cases=args.cases, seed=args.seed, now=args.now, days=args.days,
                     policy_file=settings.policy_file, progress=progress)
    except SeedError as exc:
        print(f"not seeded: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        engine.dispose()
    print(report.summary())
    return 0
