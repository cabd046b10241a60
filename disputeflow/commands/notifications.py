"""`disputeflow notifications parked|redeliver`: the notifications the webhook refused for good."""

from __future__ import annotations

import argparse

from sqlmodel import Session

from disputeflow.cli import command


def _configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("parked", help="list them, oldest first, with the webhook's answer")
    redeliver = actions.add_parser("redeliver", help="put them back in line (after fixing the gateway)")
    which = redeliver.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="notification ids")
    which.add_argument("--all", action="store_true", help="every parked notification")


@command("notifications", "Notifications the webhook refused for good: list them, or put them back in line.",
         _configure)
def notifications(args: argparse.Namespace) -> int:
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
