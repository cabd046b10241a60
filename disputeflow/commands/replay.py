"""`disputeflow replay`, `history` and `timeline`: the auditor's commands on Temporal's case histories.

`replay` re-runs today's workflow code against recorded histories (one case, every case on the
server, or exported files) and fails, naming the case, the event and Temporal's reason, when the
code no longer produces what a history recorded. `history` exports a case's raw history, the JSON
`temporal workflow show --output json` prints. `timeline` prints what happened to a case, read
from its history. Exit codes: 0 all well, 1 a history diverged, 2 nothing could be checked.

The modules behind them (the SDK's worker machinery, the workflow code) are imported when a
command runs, not when the CLI loads its commands, so `disputeflow verify-audit` stays quick.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from disputeflow.cli import command
from disputeflow.progress import Progress

if TYPE_CHECKING:
    from temporalio.client import Client

    from disputeflow.history import ReplayResult

OK, DIVERGED, NOTHING_CHECKED = 0, 1, 2


class _Unavailable(Exception):
    """What to check could not be read; the message says why, for the person at the terminal."""


def _checked(main: Coroutine[Any, Any, int]) -> int:
    """Run a command; whatever kept it from checking anything is printed, with exit code 2."""
    from temporalio.service import RPCError

    from disputeflow.history import HistoryError

    try:
        return asyncio.run(main)
    except (_Unavailable, HistoryError) as problem:
        print(problem)
    except RPCError as error:  # e.g. a server without visibility queries, asked for --all
        print(f"Temporal refused the request: {error}")
    return NOTHING_CHECKED


async def _client() -> Client:
    from disputeflow.settings import get_settings
    from disputeflow.temporal import connect

    settings = get_settings()
    _data_converter()  # unusable payload keys are reported as such, not as Temporal being unreachable
    try:
        return await connect(settings)
    except Exception as error:  # noqa: BLE001 - any failure to connect means the same to the user
        raise _Unavailable(f"cannot reach Temporal at {settings.effective_temporal_address}: {error}") from None


def _data_converter() -> Any:
    from disputeflow.codec import PayloadKeyError
    from disputeflow.settings import get_settings
    from disputeflow.temporal import data_converter

    try:
        return data_converter(get_settings())
    except PayloadKeyError as error:
        raise _Unavailable(f"cannot read the payload keys: {error}") from None


# -- replay ------------------------------------------------------------------------------------


@command("replay", "Replay case histories against today's workflow code: exit 0 if all replay, 1 if any diverges. "
                   "Give one of CASE (every run of its workflow), --all or --dir.")
@click.argument("case", required=False, metavar="[CASE]")
@click.option("--all", "all", is_flag=True, help="replay every case workflow run the server lists")
@click.option("--dir", "dir", type=click.Path(path_type=Path), metavar="DIR",
              help="replay exported history files (*.json), e.g. tests/histories")
def replay(args: SimpleNamespace) -> int:
    if sum((args.case is not None, args.all, args.dir is not None)) != 1:
        raise click.UsageError("give exactly one of CASE, --all and --dir")
    return _checked(_replay(args))


async def _replay(args: SimpleNamespace) -> int:
    from disputeflow import history

    # Per history, in replay order, what names it besides its case: its file, when it came from one.
    labels: list[str] = []

    def label(index: int) -> str:
        return labels[index] if index < len(labels) else ""

    bar = Progress(None, "replaying", unit="histories")

    def progress(done: int, total: int | None, result: ReplayResult) -> None:
        if bar.drawn:  # on a terminal: the bar, and only the histories that diverged above it
            if total is not None:
                bar.set_total(total)
            bar.update()
            if not result.ok:
                bar.write(_describe(result, label(done - 1)))  # a divergence, or an erased case
            return
        print(f"[{done}/{total if total is not None else '?'}] {_describe(result, label(done - 1))}", flush=True)

    if args.dir is not None:
        files = history.load_history_files(args.dir)
        if not files:
            raise _Unavailable(f"no history files (*.json) in {args.dir}")
        labels.extend(f"{path.name}: " for path in files)
        report = await history.replay_histories(list(files.values()), on_progress=progress,
                                                data_converter=_data_converter())
    elif args.all:
        report = await history.replay_all(await _client(), on_progress=progress)
    else:
        report = await history.replay_case(await _client(), args.case, on_progress=progress)

    bar.close()
    diverged = [(index, result) for index, result in enumerate(report.results) if not result.ok and not result.erased]
    erased = sum(result.erased for result in report.results)
    print(f"{len(report.results) - erased} replayed, {len(diverged)} diverged"
          + (f", {erased} erased (not replayable)" if erased else ""))
    for index, result in diverged:
        print(f"  {_describe(result, label(index))}")
    return DIVERGED if diverged else OK


def _describe(result: ReplayResult, label: str) -> str:
    where = f"{label}case {result.case_id} (workflow {result.workflow_id}, run {result.run_id})"
    if result.ok:
        return f"{where}: replays"
    if result.erased:
        return f"{where}: erased: its data key is destroyed, its history can no longer be decrypted"
    return f"{where}: DIVERGED at event {result.event_id}: {result.reason}"


# -- history -----------------------------------------------------------------------------------


@command("history", "Export a case's Temporal history: the JSON of `temporal workflow show --output json`.")
@click.argument("case", metavar="CASE")
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="write the JSON to FILE instead of standard output and print its SHA-256; a case that "
                   "continued as new writes run 1 to FILE and run N to FILE's name with .runN before the suffix")
def export_history(args: SimpleNamespace) -> int:
    return _checked(_export(args))


async def _export(args: SimpleNamespace) -> int:
    from disputeflow import history

    # As the server keeps it: payloads encrypted (the replayer and the Web UI's codec endpoint read them).
    runs = await history.fetch_case_history(await _client(), args.case, decode=False)
    if args.out is None:
        if len(runs) > 1:
            raise _Unavailable(f"case {args.case} has {len(runs)} runs (it continued as new), one JSON document "
                               "each: use --out FILE to write them all")
        print(history.export_history_json(runs[0]), end="")
        return OK
    for number, run in enumerate(runs, start=1):
        path = args.out if number == 1 else args.out.with_name(f"{args.out.stem}.run{number}{args.out.suffix}")
        text = history.export_history_json(run)
        path.write_text(text, encoding="utf-8")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        print(f"wrote {path}: run {number} of {len(runs)} ({run.run_id}), {len(run.events)} events, sha256 {digest}")
    return OK


# -- timeline ----------------------------------------------------------------------------------


@command("timeline", "Print what happened to a case, read from its Temporal history: who did what, and every clock.")
@click.argument("case", metavar="CASE")
@click.option("--json", "json", is_flag=True, help="print the entries as a JSON array")
def print_timeline(args: SimpleNamespace) -> int:
    return _checked(_timeline(args))


async def _timeline(args: SimpleNamespace) -> int:
    from disputeflow import history
    from disputeflow.domain.calendar import SHANGHAI

    entries = history.timeline(await history.fetch_case_history(await _client(), args.case))
    if args.json:
        print(json.dumps([entry.model_dump(mode="json") for entry in entries], ensure_ascii=False, indent=1))
        return OK
    for entry in entries:
        at = entry.at.astimezone(SHANGHAI).isoformat(sep=" ", timespec="seconds")
        print(f"{at}  run {entry.run} event {entry.event_id:>5}  {entry.kind:<19} {entry.summary}")
    return OK
