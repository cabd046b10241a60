"""The command line on Click: help everywhere, shell completion, one set of exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from disputeflow import cli

ROOT = Path(__file__).resolve().parents[1]
EVERY_COMMAND = {"token", "token-keys", "replay", "history", "timeline", "verify-audit", "db", "notifications",
                 "payload-key", "seed", "forecast"}


def test_every_command_is_there_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(cli.commands()) == EVERY_COMMAND
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in EVERY_COMMAND)
    for argv in (["token", "--help"], ["db", "upgrade", "-h"], ["notifications", "redeliver", "--help"]):
        assert cli.main(argv) == 0
        assert "Usage: disputeflow" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["no-such-command"],
    ["token", "--user", "x", "--role", "system", "--region", "37"],  # the system role has no tokens
    ["token", "--user", "x", "--role", "operator", "--region", "370"],
    ["token", "--user", "x", "--role", "operator", "--region", "37", "--hours", "0"],
    ["replay"],  # one of CASE, --all, --dir
    ["replay", "370102-20261202-0001", "--all"],
    ["seed", "--now", "2026-12-01T10:00"],  # no zone
    ["notifications", "redeliver", "3", "--all"],
    ["db", "revision"],  # no message
])
def test_a_wrong_command_line_exits_2_and_says_why(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == cli.USAGE
    assert "Error" in capsys.readouterr().err


def test_check_parses_without_running() -> None:
    cli.check(["replay", "--dir", "tests/histories"])
    cli.check(["db", "upgrade", "--sql"])
    cli.check(["db", "--help"])
    cli.check(["verify-audit", "--case", "A", "--case", "B", "--expect-head", "abc"])
    with pytest.raises(click.UsageError):
        cli.check(["db", "downgrade"])
    with pytest.raises(click.BadParameter):
        cli.check(["token", "--user", "x", "--role", "operator", "--region", "3"])


def test_shell_completion_scripts_and_answers() -> None:
    env = dict(os.environ, _DISPUTEFLOW_COMPLETE="bash_source")
    script = subprocess.run([sys.executable, "-m", "disputeflow", ], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert "complete" in script.stdout and "_DISPUTEFLOW_COMPLETE" in script.stdout, script.stderr
    env = dict(os.environ, _DISPUTEFLOW_COMPLETE="bash_complete", COMP_WORDS="disputeflow ver", COMP_CWORD="1")
    answer = subprocess.run([sys.executable, "-m", "disputeflow"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert "verify-audit" in answer.stdout, answer.stderr


def test_the_forecast_command_refuses_a_malformed_staff_option_as_a_usage_error() -> None:
    assert cli.main(["forecast", "--staff", "mediator=four"]) == 2
