"""Back-test of the staffing forecast against a seeded read model.

    python benchmarks/forecast_backtest.py [--cases 6000] [--weeks 8] [--runs 3] [--region 370102]

Seeds a temporary SQLite read model (`disputeflow seed`'s generator) with `--cases` cases over the
`--weeks` weeks before 2026-11-30 00:00 Asia/Shanghai, then forecasts that period for the region
from the period's real arrivals (6 mediators, as the seeder gives each county) and prints, per
clock, the forecast compliance beside the read model's, and the error. The seeder's cases are
generated, not worked by people (each clock is met at a random share of its budget, 8% late), so
the error measures how far the simulated process is from that data, not from a real centre's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from disputeflow.db.engine import create_schema, make_engine
from disputeflow.db.seed import seed
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.forecast.backtest import backtest
from disputeflow.settings import DEFAULT_POLICY_FILE

END = date(2026, 11, 30)  # a Monday


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--region", default="370102")
    parser.add_argument("--mediators", default="6x4")
    args = parser.parse_args()
    count, per_day = args.mediators.split("x")
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'seed.db'}")
        create_schema(engine)
        seed(engine, cases=args.cases, seed=12348, now=datetime(END.year, END.month, END.day, tzinfo=SHANGHAI),
             days=7 * args.weeks, policy_file=DEFAULT_POLICY_FILE)
        start = END - timedelta(weeks=args.weeks)
        began = time.monotonic()
        result = backtest(engine, {"region_code": args.region, "start": start.isoformat(), "weeks": args.weeks,
                                   "runs": args.runs, "staff": {"mediator": {"count": int(count), "per_day": float(per_day)}}},
                          policy_file=DEFAULT_POLICY_FILE)
        engine.dispose()
    print(f"region {args.region}, {args.weeks} weeks from {start}, {result.cases} real arrivals, "
          f"{args.runs} runs, forecast in {time.monotonic() - began:.1f} s")
    print(f"{'clock':30} {'actual':>8} {'rated':>6} {'forecast':>9} {'low-high':>13} {'rated':>6} {'error':>7}")
    for r in result.rows:
        pct = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731
        err = "-" if r.error is None else f"{100 * r.error:+.1f}pp"
        print(f"{r.clock:30} {pct(r.actual):>8} {r.actual_rated:6d} {pct(r.forecast):>9} "
              f"{pct(r.forecast_low) + '-' + pct(r.forecast_high):>13} {r.forecast_rated:6.1f} {err:>7}")
    print("outcome mix from the period's events: " + (", ".join(
        f"{e.share} {e.value:.0%} of {e.seen}" for e in result.outcomes if e.taken) or "none; the defaults"))
    mae = result.mean_absolute_error
    print(f"mean absolute error, weighted by the clocks rated: {'-' if mae is None else f'{100 * mae:.1f}pp'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
