"""Whether a call releases the GIL, measured by another Python thread's progress during the call.

No elapsed-time threshold is involved. A ticking thread runs alongside the call: each tick is one
step of Python code followed by a 1 ms sleep, which hands the GIL back. Only the ticks between
the instant before the call and the instant after it are kept. While a call holds the GIL the
ticking thread cannot run at all: it can tick only in the instants around the call, once or twice
(each tick gives the GIL straight back to the caller, who is waiting for it). A call that
releases the GIL lets it tick all along: hundreds of ticks during a call of half a second, and
still dozens when the machine's cores are busy and the sleeps overrun.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

TICK_SECONDS = 0.001


def progress_during(call: Callable[[], object]) -> int:
    """How many times another Python thread ticks while `call()` runs in this thread."""
    ticks = 0
    stop = False

    def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            time.sleep(TICK_SECONDS)

    th = threading.Thread(target=ticker, daemon=True)
    th.start()
    try:
        while ticks == 0:  # the ticker is running
            time.sleep(TICK_SECONDS)
        before = ticks
        call()
        after = ticks
    finally:
        stop = True
        th.join()
    return after - before


def hold_gil() -> None:
    """A call that holds the GIL throughout (a C loop that never lets another thread run)."""
    sum(range(5_000_000))


def assert_releases_gil(call: Callable[[], object]) -> None:
    """`call()` lets another Python thread run while it computes: that thread ticks many times
    during it, and far more than during `hold_gil()`, which holds the GIL throughout (the lesser
    of two measurements: a caller that the OS leaves waiting for a CPU after the call can let the
    ticker tick a few more times, rarely)."""
    held = min(progress_during(hold_gil), progress_during(hold_gil))
    free = progress_during(call)
    assert free > 4 * held + 30, (
        f"another Python thread ticked {free} times during the call and {held} times during a "
        "call that holds the GIL: the call holds the GIL (or is too short to observe)"
    )
