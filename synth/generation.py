"""An engine behind the request cache, as the generating stages use it (``generate_textbooks``,
``caption``): every request is looked up in the cache first; only the misses reach the engine, whose
model loads on the first miss (a run served wholly from the cache never loads it), and each
completion is cached the moment it exists, so a killed run keeps what it generated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curate.pipelines import fs

from .cache import CACHE_FOLDER, RequestCache, request_key
from .engines import Completion, Engine, Request, RequestFailed, make_engine

#: the counters every generating stage reports (stage stats and commit metadata)
COUNTERS = ("requests", "cache_hits", "engine_calls", "failed_requests", "prompt_tokens", "completion_tokens", "truncated")


def open_cache(enabled: bool, cache_uri: str | None, base_dir: Path | None, output_uri: str | None,
               storage_options: dict[str, str] | None) -> RequestCache | None:
    """The stage's request cache: ``cache_uri`` (relative to the pipeline file), else the output
    dataset's ``_curate_synth_cache`` folder; none when caching is off or there is no output."""
    if not enabled:
        return None
    if cache_uri:
        uri = cache_uri
        if not fs.is_url(uri) and not os.path.isabs(uri) and base_dir is not None:
            uri = str(base_dir / uri)
        return RequestCache(uri, storage_options)
    if output_uri:
        return RequestCache(fs.join(output_uri, CACHE_FOLDER), storage_options)
    return None


class CachedEngine:
    """One engine (from a stage's ``engine:`` params) behind an optional request cache."""

    def __init__(self, engine_params: Any, cache: RequestCache | None, threads: int) -> None:
        self.engine: Engine = make_engine(engine_params)
        self.cache = cache
        self.threads = max(1, threads)
        self.loaded = False

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def model(self) -> str:
        return self.engine.model

    def key(self, req: Request, sample: int = 0) -> str:
        return request_key(self.engine.name, self.engine.model, req, sample)

    def complete(self, requests: list[tuple[Request, int]], counters: dict[str, int]) -> list[Completion | RequestFailed]:
        """The result of each (request, sample index), in order: from the cache, else from the
        engine. Counts requests, cache hits, engine calls, failures and tokens into ``counters``.
        An :class:`~curate.synth.engines.EngineError` (credentials, no model) propagates: it fails the run."""
        results: list[Completion | RequestFailed | None] = [None] * len(requests)
        misses: list[tuple[int, Request, str]] = []
        for i, (req, sample) in enumerate(requests):
            key = self.key(req, sample)
            counters["requests"] = counters.get("requests", 0) + 1
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = hit
                counters["cache_hits"] = counters.get("cache_hits", 0) + 1
            else:
                misses.append((i, req, key))
        if misses:
            if not self.loaded:
                self.engine.setup(threads=self.threads)
                self.loaded = True

            def done(m: int, result: Completion | RequestFailed) -> None:
                i, _req, key = misses[m]
                results[i] = result
                if isinstance(result, Completion) and self.cache is not None:
                    self.cache.put(key, result)  # the moment it exists: a killed run keeps it

            counters["engine_calls"] = counters.get("engine_calls", 0) + len(misses)
            self.engine.generate([m[1] for m in misses], done)
        out: list[Completion | RequestFailed] = []
        for r in results:
            assert r is not None, "the engine answered every request"
            if isinstance(r, RequestFailed):
                counters["failed_requests"] = counters.get("failed_requests", 0) + 1
            else:
                counters["prompt_tokens"] = counters.get("prompt_tokens", 0) + r.prompt_tokens
                counters["completion_tokens"] = counters.get("completion_tokens", 0) + r.completion_tokens
                counters["truncated"] = counters.get("truncated", 0) + (r.finish_reason == "length")
            out.append(r)
        return out
