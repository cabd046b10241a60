"""`disputeflow forecast`: what share of its deadlines a region will meet with a given staff, over the next weeks."""

from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import click

from disputeflow.cli import command
from disputeflow.progress import Progress


def _parse(parse, what: str):
    """A click callback applying `parse` to each value; a ValueError is a usage error naming the option."""

    def callback(_ctx: click.Context, param: click.Parameter, values):
        try:
            if isinstance(values, tuple):
                return [parse(v) for v in values]
            return None if values is None else parse(values)
        except ValueError:
            raise click.BadParameter(f"write {what}", param=param) from None

    return callback


def _staff(text: str) -> tuple[str, int, float]:
    role, rest = text.split("=", 1)
    count, per_day = rest.split("x", 1)
    return role, int(count), float(per_day)


def _arrival(text: str) -> dict:
    from disputeflow.forecast.spec import parse_arrival

    return parse_arrival(text)


def _levels(text: str) -> list[int]:
    from disputeflow.forecast.spec import parse_levels

    return parse_levels(text)


@command("forecast", "Forecast deadline compliance for a staffing plan: runs the real case workflow over "
                     "simulated weeks on a private Temporal test server (never the real cases)")
@click.option("--region", default="370102", show_default=True, help="6-digit county code")
@click.option("--start", callback=_parse(date.fromisoformat, "a date, YYYY-MM-DD"), help="first day (default: next Monday)")
@click.option("--weeks", type=int, default=8, show_default=True)
@click.option("--runs", type=int, default=3, show_default=True, help="runs per staffing level (the spread)")
@click.option("--seed", type=int, default=12348, show_default=True)
@click.option("--staff", multiple=True, callback=_parse(_staff, "ROLE=COUNTxPER_DAY, e.g. mediator=4x4"),
              help="ROLE=COUNTxPER_DAY, e.g. mediator=4x4 (repeat; roles: operator, mediator, legal_aid_officer, "
                   "supervisor)")
@click.option("--arrivals", multiple=True,
              callback=_parse(_arrival, "CATEGORY[:DISPUTE_TYPE[:URGENCY]]=PER_WEEK, e.g. dispute:labour_wages=40"),
              help="CATEGORY[:DISPUTE_TYPE[:URGENCY]]=PER_WEEK, e.g. dispute:labour_wages=40 (repeat)")
@click.option("--from-read-model", type=int, metavar="WEEKS",
              help="take the arrivals from the read model's last WEEKS weeks in the region")
@click.option("--outcomes-from-read-model", type=int, metavar="WEEKS",
              help="take the outcome mix (sessions that agree, disputes sent to mediation, legal aid approved...) "
                   "from the read model's last WEEKS weeks in the region; a share seen fewer than 5 times keeps "
                   "its default")
@click.option("--sweep", metavar="ROLE=LEVELS", help="e.g. mediator=2-6")
@click.option("--target", type=float, default=0.95, show_default=True)
@click.option("--spec", type=click.Path(path_type=Path), help="a JSON file with the whole forecast (overrides the options)")
@click.option("--json", "json_", is_flag=True, help="print the result as JSON")
@click.option("--database-url", help="read model for --from-read-model")
def forecast_command(args: SimpleNamespace) -> int:
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
        if args.from_read_model or args.outcomes_from_read_model:
            from sqlmodel import Session

            from disputeflow.db.engine import make_engine
            from disputeflow.forecast.profile import outcome_mix, weekly_rates

            engine = make_engine(args.database_url or settings.effective_database_url)
            with Session(engine) as session:
                if args.from_read_model:
                    raw["arrivals"] = [a.model_dump(mode="json") for a in weekly_rates(
                        session, args.region, weeks=args.from_read_model, until=today)]
                if args.outcomes_from_read_model:
                    mix, evidence = outcome_mix(session, args.region, weeks=args.outcomes_from_read_model, until=today)
                    raw["outcomes"] = mix.model_dump(mode="json")
                    taken = [f"{e.share} {e.value:.0%} of {e.seen}" for e in evidence if e.taken]
                    print("outcome mix from the read model: " + (", ".join(taken) or "nothing seen often enough; "
                          "the defaults"), file=sys.stderr)
            engine.dispose()
    try:
        spec = ForecastSpec.model_validate(raw)
    except ValidationError as exc:
        print(f"not a forecast: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    print(f"forecast: about {spec.cases_per_run() * spec.runs * len(spec.levels()):.0f} cases over {spec.weeks} "
          "simulated weeks", file=sys.stderr)

    with Progress(1000, "forecast", unit="‰") as bar:  # drawn on a terminal only, never under CI
        done = 0

        def progress(fraction: float, _what: str) -> None:
            nonlocal done
            bar.update(max(0, round(fraction * 1000) - done))
            done = max(done, round(fraction * 1000))

        result = forecast(spec, policy_file=settings.policy_file, progress=progress)
    print(f"forecast took {time.monotonic() - began:.1f} s", file=sys.stderr)
    print(result.model_dump_json(indent=1) if args.json_ else text(result))
    return 0
