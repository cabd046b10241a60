"""Progress bars: drawn on a terminal, silent when not on one or under CI=true; `disputeflow seed`
draws one on a pseudo-terminal and prints its plain lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from disputeflow.progress import Progress, bars_wanted

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_on_a_terminal_and_never_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert bars_wanted(Terminal()) and not bars_wanted(io.StringIO())
    screen = Terminal()
    with Progress(3, "replaying", stream=screen) as bar:
        bar.update(3)
    assert "replaying" in screen.getvalue() and "/3" in screen.getvalue()
    monkeypatch.setenv("CI", "true")
    screen = Terminal()
    with Progress(3, "replaying", stream=screen) as bar:
        assert not bar.drawn
        bar.update(3)
    assert screen.getvalue() == ""


def run_seed(tmp_path: Path, *, ci: bool) -> str:
    """`disputeflow seed` with standard error on a pseudo-terminal; what the terminal showed."""
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    env["DISPUTEFLOW_DATA_DIR"] = str(tmp_path / "data")
    leader, follower = pty.openpty()
    url = f"sqlite:///{tmp_path / ('ci' if ci else 'tty')}.db"
    process = subprocess.Popen([sys.executable, "-m", "disputeflow.cli", "seed", "--cases", "300", "--days", "30",
                                "--database-url", url], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(60) == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


def test_seed_draws_a_bar_on_a_terminal_and_not_in_ci(tmp_path: Path) -> None:
    on_terminal = run_seed(tmp_path, ci=False)
    assert "seeding" in on_terminal and "cases" in on_terminal
    in_ci = run_seed(tmp_path, ci=True)
    assert "seeding" not in in_ci
