"""`disputeflow token`: print a bearer token (signed with the token signing key); `token-keys`: its public JWKS."""

from __future__ import annotations

import re
import sys
from types import SimpleNamespace

import click

from disputeflow.cli import command
from disputeflow.domain.enums import Role

HUMAN_ROLES = [r.value for r in Role if r is not Role.system]  # the system role has no tokens


def _region(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"\d{2}(\d{2}){0,2}", value):
        raise click.BadParameter(f"a region is 2, 4 or 6 digits of an administrative code, got {value!r}")
    return value


@command("token", "Print a bearer token for the API (signed with the token signing key).")
@click.option("--user", required=True, help="user id, e.g. med-370102-01 (the token's sub)")
@click.option("--role", required=True, type=click.Choice(HUMAN_ROLES))
@click.option("--region", required=True, callback=_region,
              help="the user's scope: 2, 4 or 6 digits of an administrative code, e.g. 3701")
@click.option("--name", help="display name")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True),
              help="lifetime (default: DISPUTEFLOW_TOKEN_TTL_HOURS, 12; at most DISPUTEFLOW_TOKEN_MAX_TTL_HOURS)")
def token(args: SimpleNamespace) -> int:
    from api.auth import TokenTooLong, issue_token
    from disputeflow.settings import get_settings
    from disputeflow.token_keys import TokenKeyError

    try:
        print(issue_token(get_settings(), user_id=args.user, role=args.role, region=args.region, name=args.name,
                          hours=args.hours))
    except (TokenTooLong, TokenKeyError) as error:
        print(f"disputeflow token: {error}", file=sys.stderr)
        return 2
    return 0


@command("token-keys", "Print the public JWKS of the token signing key (for DISPUTEFLOW_TOKEN_JWKS_FILE or a "
         "JWKS URL on the API hosts).")
def token_keys(args: SimpleNamespace) -> int:
    import json

    from disputeflow.settings import get_settings
    from disputeflow.token_keys import TokenKeyError, public_jwks

    settings = get_settings()
    if settings.token_algorithm != "EdDSA":
        print("disputeflow token-keys: tokens are HS256 here (a shared key has no public half)", file=sys.stderr)
        return 2
    try:
        print(json.dumps(public_jwks(settings), indent=1))
    except TokenKeyError as error:
        print(f"disputeflow token-keys: {error}", file=sys.stderr)
        return 2
    return 0
