"""A run that makes no progress fails instead of waiting forever.

Ray waits without end for resources a task can never get (it prints "may hang forever" and goes
on waiting), and a stuck stage holds a batch for good. The :class:`Watchdog` polls the run's live
counters; when no stage has taken in or put out a row, and no shard was written, for
``run.stall_timeout`` seconds, it interrupts the run, which then fails with
:class:`RunStalledError` naming where the rows stopped. Only in the main thread (it interrupts it
with SIGINT, as Ctrl-C would); elsewhere it only logs.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import RunStalledError


class Watchdog:
    def __init__(self, poll: Callable[[], dict[str, dict[str, Any]]], timeout_s: float, log: Callable[[str], None]) -> None:
        self.poll, self.timeout_s, self.log = poll, timeout_s, log
        self.stalled = False
        self.last_snapshot: dict[str, dict[str, Any]] = {}
        self._last_change = time.monotonic()
        self._key = ""
        self._stop = threading.Event()
        self._in_main = False  # the run executes in the main thread: the only one it may interrupt
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Progress the stats do not show (a shard written)."""
        self._last_change = time.monotonic()

    def __enter__(self) -> "Watchdog":
        self._in_main = threading.current_thread() is threading.main_thread()
        if self.timeout_s > 0:
            self._thread = threading.Thread(target=self._loop, name="curate-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        interval = max(0.5, min(10.0, self.timeout_s / 10))
        while not self._stop.wait(interval):
            try:
                snap = self.poll()
            except Exception:  # a busy stats actor is not a stall of the data
                continue
            key = json.dumps({k: [v.get("in"), v.get("out"), v.get("phase")] for k, v in snap.items()}, sort_keys=True)
            if key != self._key:
                self._key, self._last_change, self.last_snapshot = key, time.monotonic(), snap
            elif time.monotonic() - self._last_change > self.timeout_s:
                self.stalled = True
                if not self._in_main:
                    self.log(f"no progress for {self.timeout_s:g}s (the run is not in the main thread: it is not stopped)")
                    return
                self.log(f"no progress for {self.timeout_s:g}s: stopping the run")
                main = threading.main_thread().ident
                if main is not None:
                    signal.pthread_kill(main, signal.SIGINT)
                return

    def error(self, labels: list[str]) -> RunStalledError:
        parts = [f"{label}: {self.last_snapshot[label]['in']:,} rows in" for label in ["read", *labels] if label in self.last_snapshot]
        return RunStalledError(
            f"the run made no progress for {self.timeout_s:g}s (run.stall_timeout) and was stopped; nothing was published. "
            f"Where the rows stopped: {'; '.join(parts) or 'no row was read'}",
            hint="Ray may be waiting for resources it cannot get (the run log shows Ray's warnings: e.g. stages' actors or "
            "tasks asking for more CPUs, GPUs or memory than are free), or a stage is stuck on one batch. If a batch of a "
            "stage takes longer than that, raise run.stall_timeout (0: never stop)",
        )
