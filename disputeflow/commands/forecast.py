"""`disputeflow forecast`: what share of its deadlines a region will meet with a given staff, over the next weeks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from disputeflow.cli import command


def _staff(text: str) -> tuple[str, int, float]:
    try:
        role, rest = text.split("=", 1)
        count, per_day = rest.split("x", 1)
        return role, int(count), float(per_day)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write ROLE=COUNTxPER_DAY, e.g. mediator=4x4") from None


def _arrival(text: str) -> dict:
    try:
        kind, per_week = text.split("=", 1)
        parts = kind.split(":")
        out = {"category": parts[0], "per_week": float(per_week)}
        if len(parts) > 1:
            out["dispute_type"] = parts[1]
        if len(parts) > 2:
            out["urgency"] = parts[2]
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write CATEGORY[:DISPUTE_TYPE[:URGENCY]]=PER_WEEK, "
                                         "e.g. dispute:labour_wages=40") from None


def _levels(text: str) -> list[int]:
    try:
        if "-" in text:
            low, high = text.split("-", 1)
            return list(range(int(low), int(high) + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write 2-6 or 2,3,5") from None


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", default="370102", help="6-digit county code (default 370102, Lixia)")
    parser.add_argument("--start", type=date.fromisoformat, default=None, help="first day (default: next Monday)")
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="runs per staffing level (the spread)")
    parser.add_argument("--seed", type=int, default=12348)
    parser.add_argument("--staff", type=_staff, action="append", default=[],
                        help="ROLE=COUNTxPER_DAY, e.g. mediator=4x4 (repeat; roles: operator, mediator, "
                             "legal_aid_officer, supervisor)")
    parser.add_argument("--arrivals", type=_arrival, action="append", default=[],
                        help="CATEGORY[:DISPUTE_TYPE[:URGENCY]]=PER_WEEK, e.g. dispute:labour_wages=40 (repeat)")
    parser.add_argument("--from-read-model", type=int, metavar="WEEKS", default=None,
                        help="take the arrivals from the read model's last WEEKS weeks in the region")
    parser.add_argument("--sweep", default=None, metavar="ROLE=LEVELS", help="e.g. mediator=2-6")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--spec", type=Path, help="a JSON file with the whole forecast (overrides the options)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--database-url", default=None, help="read model for --from-read-model")


@command("forecast", "Forecast deadline compliance for a staffing plan: runs the real case workflow over "
                     "simulated weeks on a private Temporal test server (never the real cases)", _configure)
def forecast_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from disputeflow.forecast import ForecastSpec, forecast, text
    from disputeflow.settings import get_settings

    settings = get_settings()
    if args.spec:
        raw = json.loads(args.spec.read_text(encoding="utf-8"))
    else:
        today = date.today()
        start = args.start or today + timedelta(days=(7 - today.weekday()) % 7 or 7)
        raw = {"region_code": args.region, "start": start.isoformat(), "weeks": args.weeks, "runs": args.runs,
               "seed": args.seed, "target": args.target,
               "staff": {r: {"count": n, "per_day": p} for r, n, p in args.staff}, "arrivals": args.arrivals}
        if args.sweep:
            role, levels = args.sweep.split("=", 1)
            raw["sweep"] = {"role": role, "levels": _levels(levels)}
        if args.from_read_model:
            from sqlmodel import Session

            from disputeflow.db.engine import make_engine
            from disputeflow.forecast.profile import weekly_rates

            engine = make_engine(args.database_url or settings.effective_database_url)
            with Session(engine) as session:
                raw["arrivals"] = [a.model_dump(mode="json") for a in weekly_rates(
                    session, args.region, weeks=args.from_read_model, until=today)]
            engine.dispose()
    try:
        spec = ForecastSpec.model_validate(raw)
    except ValidationError as exc:
        print(f"not a forecast: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    print(f"forecast: about {spec.cases_per_run() * spec.runs * len(spec.levels()):.0f} cases over {spec.weeks} "
          "simulated weeks", file=sys.stderr)

    def progress(fraction: float, what: str) -> None:
        bar = "#" * round(fraction * 30)
        print(f"\r  [{bar:30}] {fraction:4.0%} {what:12} {time.monotonic() - began:6.1f} s", end="",
              file=sys.stderr, flush=True)

    result = forecast(spec, policy_file=settings.policy_file, progress=progress)
    print(file=sys.stderr)
    print(result.model_dump_json(indent=1) if args.json else text(result))
    return 0
