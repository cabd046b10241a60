"""`disputeflow notifications parked|redeliver`: the notifications the webhook refused for good."""

from __future__ import annotations

from types import SimpleNamespace

import click
from sqlmodel import Session

from disputeflow.cli import command, group


notifications_group = group("notifications",
                            "Notifications the webhook refused for good: list them, or put them back in line.")


@command("parked", "List them, oldest first, with the webhook's answer.", parent=notifications_group,
         action="parked", ids=(), all=False)
def parked(args: SimpleNamespace) -> int:
    return notifications(args)


@command("redeliver", "Put them back in line (after fixing the gateway): IDs, or --all.", parent=notifications_group,
         action="redeliver")
@click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--all", "all", is_flag=True, help="every parked notification")
def redeliver(args: SimpleNamespace) -> int:
    if args.all and args.ids:
        raise click.UsageError("give notification ids or --all, not both")
    return notifications(args)


def notifications(args: SimpleNamespace) -> int:
    from disputeflow.db import notifications as store
    from disputeflow.db.engine import engine_for
    from disputeflow.settings import get_settings

    engine = engine_for(get_settings().effective_database_url)
    if args.action == "parked":
        with Session(engine) as session:
            rows = store.parked(session)
        for message, park in rows:
            print(f"{message.id}\t{message.case_id}\t{message.kind}\t{park.parked_at:%Y-%m-%d %H:%M:%S}Z\t{park.reason}")
        print(f"{len(rows)} parked")
        return 0
    if not args.all and not args.ids:
        print("name the notifications to redeliver, or --all")
        return 2
    count = store.unpark(engine, None if args.all else args.ids)
    print(f"{count} notification(s) back in line; the worker's sender delivers them next")
    return 0
