"""`disputeflow` command line: local tokens, replay verification, audit-chain checks.

Each module in `disputeflow.commands` registers its subcommands with `command(...)`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable

_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = []


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `fn(args) -> exit code` as subcommand `name`."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS.append((name, help, configure, fn))
        return fn

    return register


def _load_commands() -> None:
    from disputeflow import commands

    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(prog="disputeflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, configure, fn in _COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    from disputeflow import logs

    args = build_parser().parse_args(argv)
    logs.setup()  # what the commands' modules log: JSON lines unless on a terminal, on standard error
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    # Run as a script the module is `__main__`, not the `disputeflow.cli` the commands register
    # with; go through the real module.
    from disputeflow.cli import main as real_main

    sys.exit(real_main())
