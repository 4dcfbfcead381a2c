"""What a run does to its process, and undoes: the run's log file (curate's and Ray's loggers
routed to it), the environment and ``sys.path``, and Ray (the caller's, a configured cluster, or
an in-process local Ray started and shut down here)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import Pipeline
from .errors import ConfigError

log = logging.getLogger("curate")

_current_log: list[str] = []


def current_log_file() -> str | None:
    return _current_log[-1] if _current_log else None


_RAY_LOGGERS = ("ray", "ray.data", "ray.util", "ray._private", "ray.air")


@contextlib.contextmanager
def run_logging(log_dir: str, run_id: str) -> Iterator[Path]:
    """The run's log file gets curate's and Ray's messages; every logger touched is restored."""
    path = Path(log_dir) / f"{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    _current_log.append(str(path))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    touched = [log, *(logging.getLogger(n) for n in _RAY_LOGGERS)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in touched]
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield path
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        handler.close()


def _route_ray_logs() -> None:
    """Ray's own messages go to the run's log file, not the terminal."""
    handlers = list(log.handlers)
    for name in _RAY_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(logging.INFO if name == "ray.data" else logging.WARNING)
        lg.propagate = False


@contextlib.contextmanager
def saved_environ() -> Iterator[None]:
    """Environment variables and ``sys.path`` as they were (plugin folders, Ray's settings); only
    the folder of Ray's vendored packages, which importing Ray adds for good, stays."""
    import sys

    saved = dict(os.environ)
    saved_path = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved_path + [p for p in sys.path if p not in saved_path and p.endswith(os.path.join("ray", "thirdparty_files"))]
        for k in set(os.environ) - set(saved):
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


@contextlib.contextmanager
def ray_session(pipeline: Pipeline) -> Iterator[dict[str, float]]:
    """A Ray to run on: the caller's if one is initialised (left running), else the configured
    cluster or an in-process local Ray (shut down afterwards). Yields the cluster's resources."""
    import ray

    rc = pipeline.config.ray
    # plugin stages given as module:Class must be importable by workers too
    plugin_dirs = [os.getcwd(), str(pipeline.base_dir)]
    pythonpath = os.pathsep.join(dict.fromkeys([*plugin_dirs, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath, "CURATE_PLUGIN_DIRS": os.pathsep.join(plugin_dirs)},
                        "worker_process_setup_hook": worker_setup_hook()},
        # Ray's default logging set-up (its handlers are re-routed to the run log). With
        # configure_logging=False the driver crashed in the GC in about 1 run of 4 here (Ray 2.60).
        "configure_logging": True,
    }
    if rc.address and rc.address != "local":
        kwargs["address"] = rc.address
    else:
        if rc.num_cpus:
            kwargs["num_cpus"] = rc.num_cpus
        if rc.num_gpus is not None:
            kwargs["num_gpus"] = rc.num_gpus
        if rc.object_store_memory:
            kwargs["object_store_memory"] = int(rc.object_store_memory)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # a loaded machine starts worker processes slowly: Ray's 60 s made runs die with "Failed to
    # startup worker" (restored afterwards with the rest of the environment)
    os.environ.setdefault("RAY_worker_register_timeout_seconds", "180")
    import ray.data  # noqa: F401  (configures its loggers on import; re-routed below)

    _route_ray_logs()
    owned = not ray.is_initialized()
    if owned:
        ray.init(**kwargs)
    else:
        log.info("using the already initialised Ray")
    _route_ray_logs()
    try:
        yield {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
    finally:
        if owned:
            ray.shutdown()


#: Runs on every Ray worker before it runs anything (pickled by value: it must not import curate
#: to be found). Ray puts the driver's working directory first on a worker's sys.path (and curate
#: adds the plugin folders): run from a source checkout, its `curate/` folder would hide the
#: installed package ("No module named 'curate.pipelines'"). The installed curate is imported
#: with those folders set aside; once imported, its subpackages are found from it, not sys.path.
_WORKER_SETUP = """
def setup():
    import os
    import sys

    folders = {os.path.abspath(p) for p in os.environ.get("CURATE_PLUGIN_DIRS", "").split(os.pathsep) if p}
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) not in folders]
    try:
        import curate.pipelines  # noqa: F401
    except ImportError:  # curate is not installed (run from its folder on purpose): as before
        for name in [m for m in sys.modules if m == "curate" or m.startswith("curate.")]:
            del sys.modules[name]
    finally:
        sys.path[:] = saved
"""


def worker_setup_hook() -> Any:
    """The worker set-up function (see ``_WORKER_SETUP``), made outside any module so that Ray
    ships it by value."""
    namespace: dict[str, Any] = {"__name__": "curate_worker_setup"}
    exec(_WORKER_SETUP, namespace)  # noqa: S102 - our own constant source
    return namespace["setup"]


def check_cpus(pipeline: Pipeline, labels: list[str], resources: dict[str, float]) -> None:
    """Actor pools (stages holding a model) keep their CPUs for the whole run. When the pools that
    stream with the reader (those before the first global stage: ``concurrency`` actors each, at
    least one) and the reader's half CPU need more CPUs than the cluster has, Ray Data waits
    forever for a CPU to read with: fail before any data is read instead."""
    import math

    from .execution.driver import uses_actors
    from .stage import GlobalStage

    cpus = float(resources.get("CPU", 0))
    held: list[str] = []
    need = 0.5 if pipeline.stages or pipeline.config.input is not None else 0.0
    for stage, label in zip(pipeline.stages, labels):
        if isinstance(stage, GlobalStage):
            break
        s = stage.settings
        if not uses_actors(stage) or not s.resources.cpus:
            continue
        actors = s.concurrency or (max(1, math.floor(resources.get("GPU", 0) / s.resources.gpus)) if s.resources.gpus else 1)
        need += actors * s.resources.cpus
        held.append(f"{label}: {actors} x {s.resources.cpus:g}")
    if held and need > cpus + 1e-9:
        raise ConfigError(
            f"the stages' actors hold {need - 0.5:g} CPU(s) for the whole run ({', '.join(held)}) and the reader needs 0.5, "
            f"but the Ray cluster has {cpus:g}: the run would wait forever for a CPU to read with",
            hint="lower these stages' `run: {cpus: ...}` or `concurrency`, or give Ray more CPUs (ray.num_cpus, which may exceed the machine's)",
        )


def check_fits(pipeline: Pipeline, labels: list[str], resources: dict[str, float]) -> None:
    """Every task and actor of the plan must fit on the cluster at all: a stage asking for more
    CPUs or memory per worker than the whole cluster has would never be scheduled (Ray waits
    forever, warning that it "may hang forever")."""
    cpus, memory = float(resources.get("CPU", 0)), float(resources.get("memory", 0))
    problems = []
    for stage, label in zip(pipeline.stages, labels):
        res = stage.settings.resources
        if res.cpus > cpus + 1e-9:
            problems.append(f"stage {label!r} asks for {res.cpus:g} CPUs per worker")
        if res.memory and memory and res.memory > memory:
            problems.append(f"stage {label!r} asks for {res.memory / 2**30:.1f} GiB of memory per worker")
    if problems:
        raise ConfigError(
            f"{'; '.join(problems)}, but the Ray cluster has {cpus:g} CPUs and {memory / 2**30:.1f} GiB of memory in all: "
            "such a worker could never start and the run would wait forever",
            hint="lower the stage's `run: {cpus: ..., memory: ...}`, or give Ray more (ray.num_cpus for a local Ray, or a larger cluster)",
        )


def check_gpus(pipeline: Pipeline, labels: list[str], resources: dict[str, float]) -> None:
    for stage, label in zip(pipeline.stages, labels):
        need = stage.settings.resources.gpus
        if need and resources.get("GPU", 0) < need:
            raise ConfigError(
                f"stage {label!r} needs {need:g} GPU(s) per worker but the Ray cluster has {resources.get('GPU', 0):g}",
                hint="run on a cluster with GPUs (ray.address), set ray.num_gpus for a local Ray, or choose a CPU engine for this stage",
            )


