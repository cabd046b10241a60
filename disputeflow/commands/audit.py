"""`disputeflow verify-audit`: recompute the audit log's hash chain and report the first broken link."""

from __future__ import annotations

from types import SimpleNamespace

import click
from sqlmodel import Session

from disputeflow.cli import command
from disputeflow.progress import Progress, bars_wanted


@command("verify-audit", "Verify the audit log's hash chain: exit 0 if intact, 1 at the first broken link.")
@click.option("--expect-head", metavar="HASH",
              help="a head hash printed by an earlier run: fail unless the chain still contains it "
                   "(catches a truncated or rewritten tail, which the chain alone cannot)")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="entries read per query")
@click.option("--case", "case", metavar="CASE", multiple=True,
              help="also hold this case's entries against its Temporal history (repeatable): catches an entry "
                   "rewritten with every later hash recomputed")
def verify_audit(args: SimpleNamespace) -> int:
    from disputeflow.db.audit import entry_with_hash, verify_chain
    from disputeflow.db.engine import engine_for
    from disputeflow.settings import get_settings

    engine = engine_for(get_settings().effective_database_url)
    with Session(engine) as session:
        with Progress(_entry_count(session), "verifying the audit chain", unit="entries") as bar:
            report = verify_chain(session, batch_size=args.batch_size, on_batch=bar.update)
        if not report.ok:
            link = report.first_broken
            assert link is not None
            print(
                f"audit chain BROKEN at entry {link.entry_id} (case {link.case_id}, event {link.event_seq}): "
                f"{link.reason}; the {report.checked} entries before it are intact"
            )
            return 1
        if args.expect_head:
            anchor = entry_with_hash(session, args.expect_head.strip().lower())
            if anchor is None:
                print(
                    f"audit chain intact ({report.checked} entries) but does not contain the expected "
                    f"head {args.expect_head}: entries were cut off or rewritten"
                )
                return 1
        print(f"audit chain intact: {report.checked} entries, head {report.head_hash or 'none (empty log)'}")
        return _check_cases(session, list(args.case)) if args.case else 0


def _entry_count(session: Session) -> int | None:
    """The bar's end, only when a bar is drawn (counting a long log is not free)."""
    from sqlmodel import func, select

    from disputeflow.db.models import AuditEntry

    if not bars_wanted():
        return None
    return session.exec(select(func.count()).select_from(AuditEntry)).one()


def _check_cases(session: Session, case_ids: list[str]) -> int:
    import asyncio

    from disputeflow import history
    from disputeflow.db.audit import compare_with_source, entries_for_case
    from disputeflow.settings import get_settings
    from disputeflow.temporal import connect

    async def fetch_all() -> dict[str, list]:
        client = await connect(get_settings())
        return {case_id: await history.fetch_case_history(client, case_id) for case_id in case_ids}

    try:
        runs_of = asyncio.run(fetch_all())
    except history.HistoryError as exc:
        print(f"cannot check against Temporal: {exc}")
        return 2
    failed = False
    for case_id, runs in runs_of.items():
        comparison = compare_with_source(case_id, entries_for_case(session, case_id), history.projected_events(runs))
        if comparison.ok:
            print(f"case {case_id}: {comparison.entries_in_log} audit entries match its workflow history")
            continue
        failed = True
        for d in comparison.discrepancies:
            print(f"case {case_id}, event {d.event_seq}: {d.problem}")
    return 1 if failed else 0
