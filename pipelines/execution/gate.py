"""The publish gate's parts as Ray tasks (``curate.pipelines.expectations`` never imports Ray)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ray_mapper(fn: Callable[..., Any], plan: Any, parts: list[list[tuple[str, int]]], so: dict[str, str]) -> list[Any]:
    """``fn(plan, part, so)`` for every part, one Ray task (1 CPU) each; results in order."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(fn)
    plan_ref = ray.put(plan)
    return list(ray.get([task.remote(plan_ref, part, so) for part in parts]))
