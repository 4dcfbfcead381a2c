"""Plugin stages used by tests/test_engine.py: copied next to each test's pipeline file, so Ray
workers import them as users' plugins are imported (``module:Class``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from curate.pipelines.stage import DropRow, Expand, Filter, Params, Resources, Stage
from pydantic import Field


class SplitParams(Params):
    sep: str = Field(". ", description="split text at this separator")


class SplitSentences(Expand[SplitParams]):
    """One row per sentence of the text; documents without text become `no_output` drops."""

    name = "split_sentences"
    Params = SplitParams
    writes = ("sentence_no",)

    def expand(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if "FAIL" in row["text"]:
            raise DropRow("failed_request", f"pretend the engine failed for {row['id']}")
        parts = [p for p in row["text"].split(self.params.sep) if p.strip()]
        return [{"text": p, "sentence_no": i} for i, p in enumerate(parts)]


class GridParams(Params):
    topics: list[str]
    audiences: list[str] = ["children", "college"]
    samples: int = 1


class Grid(Expand[GridParams]):
    """A generator: source rows are topics x audiences; each expands into `samples` texts."""

    name = "grid"
    Params = GridParams
    reads = ()
    writes = ("topic", "audience", "text")
    source_rows_per_task = 2

    def source_rows(self) -> Iterable[dict[str, Any]]:
        return [{"id": f"{t}|{a}", "topic": t, "audience": a} for t in self.params.topics for a in self.params.audiences]

    def expand(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        return [{"text": f"A text about {row['topic']} for {row['audience']}, sample {k}."} for k in range(self.params.samples)]


class AsyncParams(Params):
    delay: float = 0.2


class SlowAsyncEcho(Expand[AsyncParams]):
    """Async expand: each row waits `delay` seconds (a pretend HTTP request) and yields one child.
    Records the most requests in flight at once in the counters of its metadata file."""

    name = "slow_async_echo"
    Params = AsyncParams
    stateful = True
    max_in_flight = 8
    writes = ("echo",)

    def setup(self) -> None:
        self.in_flight = 0
        self.peak = 0

    async def aexpand(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.params.delay)
        self.in_flight -= 1
        return [{"echo": f"{row['id']}:{self.peak}"}]


class ByteSizeParams(Params):
    column: str = "image"


class ByteSize(Stage[ByteSizeParams]):
    """Adds the byte length and sha256 of a binary column."""

    name = "byte_size"
    Params = ByteSizeParams
    writes = ("nbytes", "sha256")

    def input_columns(self) -> tuple[str, ...]:
        return (self.params.column,)

    def process(self, batch: pa.Table) -> pa.Table:
        col = batch.column(self.params.column)
        digests = [hashlib.sha256(b).hexdigest() for b in col.to_pylist()]
        return batch.append_column("nbytes", pc.binary_length(col)).append_column("sha256", pa.array(digests))


class NoParams(Params):
    pass


class WhereAmI(Stage[NoParams]):
    """Stateful GPU stage: records the actor's pid and the GPU ids Ray assigned it."""

    name = "where_am_i"
    Params = NoParams
    stateful = True
    resources = Resources(cpus=0.1, gpus=1)
    reads = ()
    writes = ("worker_pid", "gpu_ids")

    def process(self, batch: pa.Table) -> pa.Table:
        import ray

        n = batch.num_rows
        ids = ",".join(str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", []))
        time.sleep(0.25)  # long enough that both actors of the pool get batches
        return batch.append_column("worker_pid", pa.array([os.getpid()] * n)).append_column("gpu_ids", pa.array([ids] * n))


class BoomParams(Params):
    bad_id: str


class Boom(Filter[BoomParams]):
    """Raises on the row whose id is `bad_id` (a bug in a stage)."""

    name = "boom"
    Params = BoomParams

    def keep(self, row: dict[str, Any]) -> bool:
        if row["id"] == self.params.bad_id:
            raise ValueError("cannot handle this row")
        return True


class SlowParams(Params):
    seconds: float = 0.05


class Slow(Stage[SlowParams]):
    """Sleeps per batch (to make runs long enough to be killed part way)."""

    name = "slow"
    Params = SlowParams
    batch_size = 50

    def process(self, batch: pa.Table) -> pa.Table:
        time.sleep(self.params.seconds)
        return batch


BATCH_SIZES: ClassVar = None


class CostlyParams(Params):
    log: str = Field(description="a file each processed row's id is appended to (counts the work done)")


class Costly(Stage[CostlyParams]):
    """Stands for expensive work (a transcription): adds `work`, logs every id it processed."""

    name = "costly"
    Params = CostlyParams
    writes = ("work",)

    def process(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("id").to_pylist()
        with open(self.params.log, "a", encoding="utf-8") as f:
            f.write("".join(f"{i}\n" for i in ids))
        return batch.append_column("work", pc.utf8_upper(batch.column("text")))


class FlakyParams(Params):
    down_file: str = Field(description="while this file exists, the service is down")
    fail_ids: list[str] | None = Field(None, description="only these rows fail while it is down (default: every row)")


class Flaky(Filter[FlakyParams]):
    """Stands for a call to a service (a caption engine): while `down_file` exists the rows fail
    for a transient reason, as an engine's connection error does."""

    name = "flaky"
    Params = FlakyParams
    reads = ("work",)

    def keep(self, row: dict[str, Any]) -> bool:
        down = os.path.exists(self.params.down_file)
        if down and (self.params.fail_ids is None or row["id"] in self.params.fail_ids):
            raise DropRow("service_down", "http://127.0.0.1:9/v1/completions: connection refused", transient=True)
        return True


class SleepyParams(Params):
    seconds: float = 3600.0


class Sleepy(Stage[SleepyParams]):
    """A stage stuck on its first batch (a hung call): for the run's no-progress watchdog."""

    name = "sleepy"
    Params = SleepyParams

    def process(self, batch: pa.Table) -> pa.Table:
        time.sleep(self.params.seconds)
        return batch


class TornDownParams(Params):
    marker: str = Field(description="a file each actor's teardown() appends a line to")


class TornDown(Stage[TornDownParams]):
    """A stateful stage whose teardown() leaves a trace: the engine must call it at the end of a run."""

    name = "torn_down"
    Params = TornDownParams
    stateful = True

    def setup(self) -> None:
        self.pid = os.getpid()

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def teardown(self) -> None:
        with open(self.params.marker, "a", encoding="utf-8") as f:
            f.write(f"{self.pid}\n")
