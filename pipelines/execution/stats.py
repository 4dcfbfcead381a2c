"""Live counters of a run, held by one Ray actor: stage tasks report, the driver polls.

Only for the progress display and worker seconds; the counts a version records come from the
data itself (see :mod:`.writer`).
"""

from __future__ import annotations

import time
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def _entry(self, stage: str) -> dict[str, Any]:
        return self.data.setdefault(stage, {"in": 0, "dropped": 0, "out": 0, "seconds": 0.0, "counters": {}, "first": time.time()})

    def add(self, stage: str, rows_in: int, dropped: int, seconds: float, counters: dict[str, int], rows_out: int | None = None) -> None:
        d = self._entry(stage)
        d["in"] += rows_in
        d["dropped"] += dropped
        d["out"] += rows_in - dropped if rows_out is None else rows_out
        d["seconds"] += seconds
        d["last"] = time.time()
        for k, v in counters.items():
            d["counters"][k] = d["counters"].get(k, 0) + int(v)

    def phase(self, stage: str, phase: str) -> None:
        self._entry(stage)["phase"] = phase

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.data
