"""An engine behind the request cache, as the generating stages use it (``generate_textbooks``,
``caption``): every request is looked up in the cache first; only the misses reach the engine, whose
model loads on the first miss (a run served wholly from the cache never loads it), and each
completion is cached the moment it exists, so a killed run keeps what it generated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from curate.pipelines import fs
from curate.pipelines.stage import Params
from pydantic import Field, field_validator, model_validator

from .cache import CACHE_FOLDER, RequestCache, request_key
from .engines import Completion, Engine, Request, RequestFailed, make_engine

#: the counters every generating stage reports (stage stats and commit metadata)
COUNTERS = ("requests", "cache_hits", "engine_calls", "failed_requests", "prompt_tokens", "completion_tokens", "truncated")


class EngineParams(Params):
    """Which engine generates, and how. ``engine: llama_cpp`` is short for ``engine: {name: llama_cpp}``."""

    name: Literal["llama_cpp", "openai", "vllm"] = "llama_cpp"
    model: str | None = Field(None, description="model name (openai, vllm: required; llama_cpp: recorded name, default the file's)")
    model_path: str | None = Field(None, description="llama_cpp: a GGUF file (default: the bundled Gemma 3 270M)")
    n_ctx: int = Field(2048, ge=128, description="context length (llama_cpp, vllm)")
    threads: int | None = Field(None, ge=1, description="llama_cpp threads (default: the stage's cpus)")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the server's base URL (with /v1)")
    api_key_env: str | None = Field(None, description="openai: environment variable holding the API key")
    chat: bool = Field(False, description="openai: /chat/completions instead of /completions")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight per actor")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(3, ge=0, description="openai: retries on 429, 5xx, timeouts, connection errors")
    backoff: float = Field(0.5, ge=0, description="openai: first retry delay (doubles each retry)")
    backoff_max: float = Field(20.0, ge=0)
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs per model")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm")
    tokens_per_second: float | None = Field(None, gt=0, description="--dry-run's speed estimate per actor")

    @model_validator(mode="after")
    def _needs_model(self) -> "EngineParams":
        if self.name in ("openai", "vllm") and not self.model:
            raise ValueError(f"engine {self.name} needs a model name (engine.model)")
        return self


class SamplingParams(Params):
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    stop: list[str] = Field(default_factory=list)
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="penalise tokens by how often they already occur (small models loop)")
    presence_penalty: float = Field(0.0, ge=-2, le=2, description="penalise tokens that already occur")


class GenerationParams(Params):
    """What the params of every generating stage share: the engine and the request cache."""

    engine: EngineParams = Field(default_factory=EngineParams)
    cache: bool = Field(True, description="cache completions (in DATASET/_curate_synth_cache, or cache_uri)")
    cache_uri: str | None = None

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


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

    def close(self) -> None:
        """Release the engine (a loaded model, an HTTP client and its event loop)."""
        self.engine.close()

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
