"""Live per-stage progress while a run executes, and the summary table at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"


def progress_table(snapshot: dict[str, dict[str, Any]], labels: list[str], elapsed: float) -> Table:
    table = Table(title=f"curate run: {elapsed:,.0f}s", title_justify="left")
    for col in ("stage", "in", "kept", "dropped", "docs/s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    starts = [d["first"] for d in snapshot.values() if "first" in d]
    run_start = min(starts) if starts else time.time()
    for label in ["read", *labels]:
        d = snapshot.get(label)
        if not d:
            table.add_row(label, "", "", "", "waiting")
            continue
        # docs/s over the time since processing started (stages run concurrently, streaming)
        span = max(1.0, d.get("last", time.time()) - run_start)
        rate = _rate(d["in"], span) if d["in"] else "-"
        phase = d.get("phase")
        table.add_row(
            label + (f" ({phase})" if phase else ""),
            f"{d['in']:,}",
            f"{d['in'] - d['dropped']:,}",
            f"{d['dropped']:,}",
            rate,
        )
    return table


class ProgressDisplay:
    """Polls the run's Stats actor and redraws; plain log lines when not on a terminal."""

    def __init__(self, poll: Callable[[], dict[str, dict[str, Any]]], labels: list[str], console: Console, enabled: bool, log: Callable[[str], None]) -> None:
        self.poll, self.labels, self.console, self.enabled, self.log = poll, labels, console, enabled, log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_time = time.time()

    def __enter__(self) -> "ProgressDisplay":
        self._thread = threading.Thread(target=self._loop, name="curate-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _snapshot(self) -> dict[str, dict[str, Any]] | None:
        try:
            return self.poll()
        except Exception:  # the actor may be gone while shutting down
            return None

    def _loop(self) -> None:
        if self.enabled and self.console.is_terminal:
            with Live(console=self.console, refresh_per_second=4, transient=True) as live:
                while not self._stop.wait(0.5):
                    snap = self._snapshot()
                    if snap is not None:
                        live.update(progress_table(snap, self.labels, time.time() - self.start_time))
            return
        interval = 10.0
        while not self._stop.wait(interval):
            snap = self._snapshot()
            if snap is None:
                continue
            parts = []
            for label in ["read", *self.labels]:
                d = snap.get(label)
                if d:
                    parts.append(f"{label}: {d['in']:,} in, {d['dropped']:,} dropped")
            line = f"[{time.time() - self.start_time:,.0f}s] " + "; ".join(parts)
            self.log(line)
            if self.enabled:
                self.console.print(line, highlight=False)


def summary_table(stage_stats: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("stage", "in", "out", "dropped", "by rule", "worker s"):
        table.add_column(col, justify="left" if col in ("stage", "by rule") else "right")
    for s in stage_stats:
        rules = ", ".join(f"{k}: {v:,}" for k, v in sorted(s["dropped_by_rule"].items()))
        counters = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.get("counters", {}).items()))
        detail = "; ".join(x for x in (rules, counters) if x)
        table.add_row(s["stage"], f"{s['in']:,}", f"{s['out']:,}", f"{s['dropped']:,}", detail, f"{s.get('seconds', 0):.1f}")
    return table
