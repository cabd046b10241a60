"""`disputeflow` command line: local tokens, replay verification, audit-chain checks.

Built on Click: `--help` on every command, shell completion (`_DISPUTEFLOW_COMPLETE=bash_source
disputeflow`; zsh_source, fish_source), and one set of exit codes for all commands:

    0  done, or everything checked is intact
    1  a check failed (a history diverged, the audit chain is broken, nothing to write)
    2  the command line is wrong, or nothing could be checked or done (unreachable, bad keys)
  130  interrupted (Ctrl-C)

Each module in `disputeflow.commands` registers its commands with `command(...)` (and groups of
subcommands with `group(...)`); a command's function takes the parsed options as one namespace
(`args.user`, `args.all`) and returns its exit code.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import click

OK, FAILED, USAGE = 0, 1, 2
INTERRUPTED = 130

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(name="disputeflow", help=__doc__.splitlines()[0], context_settings=CONTEXT)
def app() -> None:
    """The root group; the commands are loaded from `disputeflow.commands`."""


Handler = Callable[[SimpleNamespace], int]


def group(name: str, help: str) -> click.Group:
    """A command with subcommands (`disputeflow db current`), registered with the CLI."""
    made = click.Group(name=name, help=help, short_help=_short(help), context_settings=CONTEXT)
    app.add_command(made)
    return made


def command(name: str, help: str, *, parent: click.Group | None = None, **fixed: Any) -> Callable[[Handler], Handler]:
    """Register `fn(args) -> exit code` as `disputeflow [parent] name`. Put `@click.option(...)` and
    `@click.argument(...)` under this decorator; `fixed` values are added to `args` as they are
    (a group's subcommands sharing one function tell it which they are)."""

    def register(fn: Handler) -> Handler:
        params = list(reversed(getattr(fn, "__click_params__", [])))

        def callback(**values: Any) -> int:
            return int(fn(SimpleNamespace(**values, **fixed)) or 0)

        made = click.Command(name=name, help=help, short_help=_short(help), params=params, callback=callback,
                             context_settings=CONTEXT)
        (parent or app).add_command(made)
        return fn

    return register


def _short(help: str) -> str:
    return help.split(": ")[0].split(". ")[0].rstrip(".")


def _load_commands() -> None:
    from disputeflow import commands

    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def commands() -> dict[str, click.Command]:
    _load_commands()
    return dict(app.commands)


def check(argv: list[str]) -> None:
    """Parse a command line as `disputeflow` would, without running it: `click.UsageError` (or
    `BadParameter`) when it does not parse."""
    _load_commands()
    try:
        ctx = app.make_context("disputeflow", list(argv), resilient_parsing=False)
        command: click.Command = app
        while isinstance(command, click.Group):
            name, command, args = command.resolve_command(ctx, _unparsed(ctx))
            if command is None:
                raise click.UsageError(f"no such command {name!r}")
            ctx = command.make_context(name, args, parent=ctx)
    except click.exceptions.Exit:  # --help: it parses (and printed the help)
        return


def _unparsed(ctx: click.Context) -> list[str]:
    """What a group left for its subcommand (Click 8.2 keeps it in `_protected_args`; before, public)."""
    protected = ctx.__dict__.get("_protected_args")
    if protected is None:
        protected = ctx.protected_args
    return [*protected, *ctx.args]


def main(argv: list[str] | None = None) -> int:
    """Run one command line; its exit code (never raises SystemExit, but for shell completion)."""
    from disputeflow import logs

    _load_commands()
    logs.setup()  # what the commands' modules log: JSON lines unless on a terminal, on standard error
    try:
        result = app.main(args=argv, prog_name="disputeflow", standalone_mode=False)
    except click.ClickException as error:  # UsageError, BadParameter: 2
        error.show()
        return USAGE if isinstance(error, click.UsageError) else error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except (click.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    # Run as a script the module is `__main__`, not the `disputeflow.cli` the commands register
    # with; go through the real module.
    from disputeflow.cli import main as real_main

    sys.exit(real_main())
