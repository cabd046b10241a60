"""Every benchmark in one run, and one table: each figure, its goal, and its ratio to a baseline
measured in the same run.

    python benchmarks/bench.py [--open 1000] [--cases 100000] [--postgres URL] [--out FILE.md]
    make bench

Runs, one after the other (each alone on the machine, as far as this script goes: before each, it
waits, at most a minute, until the CPUs were 85% idle over 2 s), each with `--json` so that its
figures come back with their goals and baselines (`benchmarks/figures.py`):

- `case_workflow.py`: intake through `POST /cases` against raw `start_workflow` of the same case,
  on the real stack (dev server, worker, API); the replay of a case over HTTP;
- `breach_lateness.py --open N --intake-rate 1 --bare`: how late 100 emergencies' breaches are
  recorded and reach the board among N open cases while intake goes on, against a bare workflow's
  timer under the same load; the worker's memory;
- `read_model_scale.py --cases N`: every list, inbox, search, board and report route at N seeded
  cases (SQLite; PostgreSQL too with `--postgres`), against the same route on an empty database;
- `forecast_speed.py`: a staffing forecast of 1,000 cases over 8 weeks, against bare workflows
  making the same starts and updates.

It prints the table and writes it, with the date, the machine and its load, to `--out` (default
`benchmarks/results/bench-<date>.md`). A benchmark that fails is reported in the table and the
others still run; the exit status is 1 then. It takes 10 to 20 minutes on the 2-CPU machines here.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import figures
from figures import Figure

HERE = Path(__file__).resolve().parent


def _machine() -> str:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    memory = ""
    try:
        kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.node()}: {os.cpu_count()} CPUs{f' ({model})' if model else ''}{memory}, {platform.platform()}"


def _run(name: str, script: str, arguments: list[str], timeout: float) -> tuple[list[Figure], str, bool]:
    """Run one benchmark: its figures, a note (its time and load, or why it failed), and whether it ran through."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        load = os.getloadavg()[0]
        began = time.monotonic()
        print(f"== {name}: {script} {' '.join(arguments)}", flush=True)
        try:
            done = subprocess.run([sys.executable, str(HERE / script), *arguments, "--json", str(out)],
                                  timeout=timeout, cwd=HERE.parent)
        except subprocess.TimeoutExpired:
            return [], f"{name}: did not finish within {timeout:.0f} s", False
        took = time.monotonic() - began
        if done.returncode != 0 or not out.exists():
            return ([] if not out.exists() else figures.read(out)), f"{name}: exited with {done.returncode}", False
        return figures.read(out), f"{name}: {took:.0f} s, load {load:.1f} before, {os.getloadavg()[0]:.1f} after", True


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def table(found: list[Figure]) -> str:
    lines = ["| figure | measured | goal | met | baseline (same run) | ratio to it |", "|---|---:|---:|:-:|---:|---:|"]
    for f in found:
        goal = "—" if f.goal is None else f"{'≤' if f.at_most else '≥'} {_cell(f.goal, f.unit)}"
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        baseline = "—" if f.baseline is None else f"{_cell(f.baseline, f.unit)}: {f.baseline_is}"
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}"
        lines.append(f"| {f.name} | {_cell(f.measured, f.unit)} | {goal} | {met} | {baseline} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=1000, help="open cases for the breach benchmark (default 1000)")
    parser.add_argument("--cases", type=int, default=100_000, help="seeded cases for the reads (default 100,000)")
    parser.add_argument("--postgres", help="also measure the reads on this (empty or seeded) PostgreSQL database")
    parser.add_argument("--intakes", type=int, default=300, help="intakes per phase (default 300)")
    parser.add_argument("--skip", action="append", default=[], choices=["intake", "breaches", "reads", "forecast"],
                        help="leave a benchmark out (repeatable)")
    parser.add_argument("--out", type=Path, help="Markdown file (default benchmarks/results/bench-<date>.md)")
    args = parser.parse_args(argv)
    began = datetime.now(UTC)
    runs = [
        ("intake", "case_workflow.py", ["--cases", str(args.intakes), "--replays", "20"], 900),
        ("breaches", "breach_lateness.py", ["--open", str(args.open), "--start-concurrency", "32", "--intake-rate", "1",
                                            "--bare", "--cases", "100", "--spread", "10", "--timeout", "300"],
         max(900, args.open * 0.5)),
        ("reads", "read_model_scale.py", ["--cases", str(args.cases)] + (["--postgres", args.postgres]
                                                                          if args.postgres else []), 1800),
        ("forecast", "forecast_speed.py", [], 900),
    ]
    found: list[Figure] = []
    notes: list[str] = []
    failed = False
    for name, script, arguments, timeout in runs:
        if name in args.skip:
            continue
        settled = figures.settle()  # the previous benchmark's processes and writes finished
        print(settled, flush=True)
        got, note, ok = _run(name, script, arguments, timeout)
        note += f" ({settled})"
        found += got
        notes.append(note)
        failed |= not ok
    text = table(found)
    command = " ".join(["python benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])])
    header = (f"# Benchmarks, {began:%Y-%m-%d %H:%M} UTC\n\n`{command}`\n\nMachine: {_machine()}.\n\n"
              + "".join(f"- {note}\n" for note in notes))
    print()
    print(text)
    out = args.out or HERE / "results" / f"bench-{began:%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "\n" + text + "\n", encoding="utf-8")
    print(f"\nwritten to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
