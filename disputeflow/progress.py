"""Progress bars for long commands (`replay --all`, `verify-audit`, `seed`, the benchmarks).

A bar is drawn only on a terminal (standard error a TTY) and never under `CI=true`; otherwise
`Progress` draws nothing, and the command prints what it always printed. Lines printed while a bar
is drawn go through `write`, above the bar.
"""

from __future__ import annotations

import io
import os
import sys
from types import TracebackType
from typing import Any, TextIO


def bars_wanted(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def _has_size(stream: TextIO) -> bool:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    return size.columns > 0 and size.lines > 0


class Progress:
    """`with Progress(total, "replaying") as bar: bar.update(); bar.write("line")`. `total` None:
    a counter without an end. `drawn` says whether a bar is shown."""

    def __init__(self, total: int | None, description: str, *, unit: str = "it", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.drawn = bars_wanted(self.stream) if enabled is None else enabled
        self._bar: Any = None
        if self.drawn:
            from tqdm import tqdm

            # A terminal that does not tell its size (0 x 0: a bare pseudo-terminal) would hide the bar.
            sized = _has_size(self.stream)
            self._bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False,
                             dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def write(self, line: str, *, file: TextIO | None = None) -> None:
        """Print a line (to standard output by default) without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line, file=file or sys.stdout)
        else:
            print(line, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
