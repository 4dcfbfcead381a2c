"""Shared fixtures. Tests use real parts: a real local Ray, real Delta tables read back with polars."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray for the in-process tests (CLI tests start their own, as users do)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=512 * 1024**2)
    yield ray
    ray.shutdown()


# ------------------------------------------------------------------------------------ test tiers
#: what a test needs, from the cheapest to the costliest; every test gets exactly one tier marker:
#: - unit: no Ray, no subprocess: runs in this process (`make test-fast`)
#: - ray: Ray in this process (the session's `ray_session`, `curate.run`, a local cluster)
#: - e2e: the `curate` command in a subprocess (each starts its own Ray)
#: - system: a real browser, Postgres, Airflow, a wheel build, llama.cpp or Whisper models
SYSTEM_MODULES = {
    "test_annotation_browser", "test_annotation_page", "test_annotation_postgres", "test_annotation_load",
    "test_annotation_durability", "test_annotation_outage", "test_annotation_pipeline", "test_dags", "test_packaging",
    "test_synth_llama", "test_synth_openai", "test_transcribe", "test_caption", "test_readers_audio",
}
#: calls that put a test in a tier (in its own code, or in a function of its module it calls)
E2E_CALLS = ("run_cli(", "curate_exe(", "subprocess.")
RAY_CALLS = ("ray_session", "curate.run(", "run_pipeline(", "local_ray_cluster(", "ray.init(", "api.run(")
#: per-test time limit (pytest-timeout): system tests start servers and load models
TIMEOUTS = {"unit": 120, "ray": 120, "e2e": 120, "system": 600}


def _callers_of(module: object, calls: tuple[str, ...]) -> set[str]:
    """Names of the module's functions that make one of ``calls``, directly or through another."""
    import inspect

    sources = {}
    for name, fn in vars(module).items():
        if inspect.isfunction(fn) and getattr(fn, "__module__", None) == getattr(module, "__name__", None):
            try:
                sources[name] = inspect.getsource(fn)
            except (OSError, TypeError):
                continue
    found = {n for n, src in sources.items() if any(c in src for c in calls)}
    while True:
        more = {n for n, src in sources.items() if n not in found and any(f"{f}(" in src for f in found)}
        if not more:
            return found
        found |= more


def tier_of(item: pytest.Item, cache: dict[tuple[str, str], set[str]]) -> str:
    import inspect

    module = item.module  # type: ignore[attr-defined]
    if module.__name__.rsplit(".", 1)[-1] in SYSTEM_MODULES:
        return "system"
    try:
        src = inspect.getsource(item.function)  # type: ignore[attr-defined]
    except (OSError, TypeError):
        src = ""
    fixtures = set(getattr(item, "fixturenames", ()))
    for tier, calls in (("e2e", E2E_CALLS), ("ray", RAY_CALLS)):
        key = (module.__name__, tier)
        if key not in cache:
            cache[key] = _callers_of(module, calls)
        if any(c in src for c in calls) or any(f"{f}(" in src for f in cache[key]) or (tier == "ray" and "ray_session" in fixtures):
            return tier
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[tuple[str, str], set[str]] = {}
    for item in items:
        tier = tier_of(item, cache)
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS[tier]))
