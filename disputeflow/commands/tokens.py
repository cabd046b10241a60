"""`disputeflow token`: print a bearer token for local use (signed with this machine's key)."""

from __future__ import annotations

import argparse
import re

from disputeflow.cli import command
from disputeflow.domain.enums import Role

HUMAN_ROLES = [r.value for r in Role if r is not Role.system]  # the system role has no tokens


def _region(value: str) -> str:
    if not re.fullmatch(r"\d{2}(\d{2}){0,2}", value):
        raise argparse.ArgumentTypeError(f"a region is 2, 4 or 6 digits of an administrative code, got {value!r}")
    return value


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {value!r}") from None
    if not 0 < hours <= 24 * 366:
        raise argparse.ArgumentTypeError("hours must be more than 0 and at most a year")
    return hours


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="user id, e.g. med-370102-01 (the token's sub)")
    parser.add_argument("--role", required=True, choices=HUMAN_ROLES)
    parser.add_argument("--region", required=True, type=_region,
                        help="the user's scope: 2, 4 or 6 digits of an administrative code, e.g. 3701")
    parser.add_argument("--name", help="display name")
    parser.add_argument("--hours", type=_hours, help="lifetime (default: DISPUTEFLOW_TOKEN_TTL_HOURS, 12)")


@command("token", "Print a bearer token for the API (local use: signed with this machine's key).", _configure)
def token(args: argparse.Namespace) -> int:
    from api.auth import issue_token
    from disputeflow.settings import get_settings

    print(issue_token(get_settings(), user_id=args.user, role=args.role, region=args.region, name=args.name,
                      hours=args.hours))
    return 0
