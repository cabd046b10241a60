"""Compliance counters (placeholder: the read model keeps none yet)."""

from __future__ import annotations

from typing import Any


class Counters:
    def __init__(self) -> None:
        self.counts: dict[tuple, list[int]] = {}

    def add_row(self, row: dict[str, Any]) -> None:
        pass

    def merge(self, counts: dict[tuple, list[int]]) -> None:
        pass

    def write(self, conn: Any) -> int:
        return 0
