"""``generate_textbooks``: a Cosmopedia-style synthetic textbook generator as an Expand stage.

Two modes:

- **generation** (no pipeline input): seeds are topics (``topics`` or ``topics_file``, one per
  line), crossed with ``formats`` (templates) x ``audiences`` x ``languages``: each combination is
  a grid cell, a source row, that expands into ``samples`` generated texts.
- **transformation**: seeds are the input rows' ``text`` (any input, e.g. a curate dataset
  version), each rewritten with every format (``rewrite_textbook``, ``rewrite_qa``,
  ``rewrite_wikipedia``) x audience x language x sample.

Prompts are Jinja templates (``synth/templates/NAME.jinja``, or ``templates: {NAME: path}``);
variables: ``topic`` / ``seed_text``, ``audience``, ``audience_desc``, ``format``, ``language``,
``max_seed_chars``. Each generation has its own seed derived from ``seed``, the cell and the
sample index, so a grid generates the same texts on every run (for an engine that honours seeds).

Every completion is cached in the output dataset's folder (:mod:`.cache`) before it is used: a
killed or repeated run never asks the engine twice for the same (prompt, model, engine, sampling,
sample). Every output row carries its provenance. A request that fails (after the engine's
retries) drops its parent row with rule ``request_failed`` and the error as reason, transiently
when the engine was at fault (down, timing out: the row is retried by the next run, and more
than ``max_failed_fraction``, 0.05 here, of such rows fail the run); the samples of that row that
did succeed are cached, so a retry asks only for the failed ones.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import Drops, Expand, ExpandOutput, Resources
from pydantic import Field, model_validator

from .cache import RequestCache
from .engines import Completion, Request, RequestFailed, make_engine
from .generation import COUNTERS, CachedEngine, GenerationParams, SamplingParams, open_cache

TEMPLATES_DIR = Path(__file__).parent / "templates"

AUDIENCES = {
    "young_children": "young children (ages 5 to 8), in simple words with examples from everyday life",
    "high_school": "high school students, assuming no prior knowledge of the subject",
    "college": "college students, rigorous and detailed",
    "researchers": "researchers and experts, precise and technical",
}

#: the variables a generate_textbooks template is rendered with
TEMPLATE_VARIABLES = ("topic", "seed_text", "audience", "audience_desc", "format", "language", "max_seed_chars")

#: rough generation speed per actor (tokens/s) for --dry-run, when engine.tokens_per_second is unset
DEFAULT_TOKENS_PER_SECOND = {"llama_cpp": 25.0, "openai": 200.0, "vllm": 2000.0}

#: columns every output row has (generation mode adds ``topic``)
PROVENANCE = (
    "text", "seed_id", "seed_hash", "format", "audience", "language", "template", "template_hash",
    "engine", "model", "sampling", "sample", "request_seed", "prompt", "prompt_tokens",
    "completion_tokens", "finish_reason",
)


class TextbookParams(GenerationParams):
    mode: Literal["generation", "transformation"] = "generation"
    topics: list[str] | None = Field(None, description="generation: the seed topics")
    topics_file: str | None = Field(None, description="generation: a file of topics, one per line (relative to the pipeline file)")
    max_seeds: int | None = Field(None, ge=1, description="generation: use this many topics, chosen with `seed`")
    sample_fraction: float = Field(1.0, gt=0, le=1, description="transformation: share of input rows used, chosen with `seed`")
    formats: list[str] | None = Field(None, description="template names (default: textbook; transformation: rewrite_textbook)")
    audiences: list[str] = Field(default_factory=lambda: ["high_school"])
    languages: list[str] = Field(default_factory=lambda: ["English"])
    templates: dict[str, str] = Field(default_factory=dict, description="template name -> .jinja file (adds or overrides)")
    max_seed_chars: int = Field(4000, ge=1, description="transformation: characters of the seed text put in the prompt")
    samples: int = Field(1, ge=1, description="generations per grid cell")
    seed: int = 0
    sampling: SamplingParams = Field(default_factory=SamplingParams)

    @model_validator(mode="after")
    def _mode(self) -> "TextbookParams":
        if self.mode == "generation" and not (self.topics or self.topics_file):
            raise ValueError("generation mode needs `topics` or `topics_file`")
        if self.mode == "transformation" and (self.topics or self.topics_file):
            raise ValueError("transformation mode takes its seeds from the input's text: remove `topics`/`topics_file`")
        for aud in self.audiences:  # any phrase is an audience, but one a typo away from a known key is a typo
            close = difflib.get_close_matches(aud, [a for a in AUDIENCES if a != aud], n=1, cutoff=0.85)
            if aud not in AUDIENCES and close:
                raise ValueError(f"audience {aud!r} is not a known audience: did you mean {close[0]!r}? (known: {', '.join(AUDIENCES)}; "
                                 "any other phrase is used as written)")
        return self


def _hash(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from parts."""
    return int(hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:15], 16) / 16**15


class GenerateTextbooks(Expand[TextbookParams]):
    """Synthetic textbooks (Cosmopedia-style): seeds x formats x audiences x languages x samples, generated by llama_cpp, an OpenAI-compatible server or vLLM, cached and resumable."""

    name = "generate_textbooks"
    Params = TextbookParams
    stateful = True
    #: a generator may lose a few requests to a flaky engine and still publish (they are retried)
    max_failed_fraction: ClassVar[float] = 0.05
    batch_size = 8
    resources = Resources(cpus=1)
    source_rows_per_task = 4
    reads: ClassVar[tuple[str, ...]] = ()  # transformation mode: text (input_columns)
    writes: ClassVar[tuple[str, ...]] = PROVENANCE  # generation mode adds topic (output_columns)
    #: children carry their own text (transformation: the input text is their seed)
    rewrites: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, params: TextbookParams) -> None:
        super().__init__(params)
        self._base_dir: Path | None = None
        self._topics: list[str] | None = None
        self._templates: dict[str, str] | None = None
        self._output_uri: str | None = None
        self._storage_options: dict[str, str] = {}

    # -- declarations ------------------------------------------------------------------------

    def input_columns(self) -> tuple[str, ...]:
        return ("text",) if self.params.mode == "transformation" else ()

    def output_columns(self) -> tuple[str, ...]:
        return PROVENANCE + (("topic",) if self.params.mode == "generation" else ())

    @property
    def formats(self) -> list[str]:
        return self.params.formats or (["textbook"] if self.params.mode == "generation" else ["rewrite_textbook"])

    def check(self, base_dir: Path) -> None:
        from .engines import check_installed

        check_installed(self.params.engine, "stage generate_textbooks")
        self._prepare(base_dir)

    def bind_output(self, dataset_uri: str, storage_options: dict[str, str] | None = None) -> None:
        self._output_uri = dataset_uri
        self._storage_options = dict(storage_options or {})

    def _prepare(self, base_dir: Path) -> None:
        """Read the topics and templates (on the driver: workers need no access to the files)."""
        p = self.params
        self._base_dir = base_dir
        if p.mode == "generation":
            topics = list(p.topics or [])
            if p.topics_file:
                path = base_dir / p.topics_file
                if not path.is_file():
                    raise ConfigError(f"stage generate_textbooks: topics_file {p.topics_file!r} not found (looked at {path})")
                topics += [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip() and not t.lstrip().startswith("#")]
            topics = list(dict.fromkeys(topics))
            if p.max_seeds is not None and p.max_seeds < len(topics):
                chosen = set(random.Random(p.seed).sample(range(len(topics)), p.max_seeds))
                topics = [t for i, t in enumerate(topics) if i in chosen]
            self._topics = topics
        templates = {}
        for name in self.formats:
            src = p.templates.get(name)
            path = (base_dir / src) if src else TEMPLATES_DIR / f"{name}.jinja"
            if not path.is_file():
                known = sorted({f.stem for f in TEMPLATES_DIR.glob("*.jinja")} | set(p.templates))
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                raise ConfigError(f"stage generate_textbooks: no template for format {name!r} ({path} not found); shipped: {', '.join(known)}; or set templates: {{{name}: path/to/file.jinja}}",
                                  hint=f"did you mean {close[0]!r}?" if close else None)
            templates[name] = path.read_text(encoding="utf-8")
        try:
            import jinja2

            env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
            for name, src in templates.items():
                env.from_string(src)
        except ImportError as exc:
            raise ConfigError("stage generate_textbooks needs the synth extra: pip install 'curate[synth]'") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"stage generate_textbooks: template {name!r}: {exc}") from exc
        self._templates = templates
        # every template rendered as the run will render it (strict: an unknown variable is an error now, not after the run started)
        probe = {"seed_id": "probe", "seed_text": "probe", "audience": p.audiences[0] if p.audiences else "", "language": p.languages[0] if p.languages else ""}
        for name in templates:
            try:
                self.render({**probe, "format": name})
            except jinja2.UndefinedError as exc:
                missing = str(exc).split("'")[1] if str(exc).count("'") >= 2 else ""
                close = difflib.get_close_matches(missing, TEMPLATE_VARIABLES, n=1, cutoff=0.6)
                raise ConfigError(f"stage generate_textbooks: template {name!r}: {exc}; the variables a template gets: {', '.join(TEMPLATE_VARIABLES)}",
                                  hint=f"did you mean {{{{ {close[0]} }}}}?" if close else None) from None
            except jinja2.TemplateError as exc:
                raise ConfigError(f"stage generate_textbooks: template {name!r}: {type(exc).__name__}: {exc}") from None

    def _ensure_prepared(self) -> None:
        if self._templates is None:
            self._prepare(self._base_dir or Path.cwd())

    # -- the grid ------------------------------------------------------------------------------

    def source_rows(self) -> Iterable[dict[str, Any]] | None:
        if self.params.mode != "generation":
            return None
        self._ensure_prepared()
        rows = []
        for topic in self._topics or []:
            sid = _hash(topic, 12)
            for fmt in self.formats:
                for aud in self.params.audiences:
                    for lang in self.params.languages:
                        rows.append({"id": f"{sid}|{fmt}|{aud}|{lang}", "topic": topic})
        return rows

    def cells(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The (format, audience, language) cells of one row: a source row of the grid is one cell
        (its id names it); an input row (transformation) is crossed with all of them."""
        if self.params.mode == "generation":
            sid, fmt, aud, lang = str(row["id"]).split("|")
            return [{"seed_id": sid, "seed_text": row["topic"], "format": fmt, "audience": aud, "language": lang}]
        return [{"seed_id": str(row["id"]), "seed_text": row.get("text") or "", "format": f, "audience": a, "language": g}
                for f in self.formats for a in self.params.audiences for g in self.params.languages]

    def render(self, cell: dict[str, Any]) -> str:
        import jinja2

        env = getattr(self, "_jinja", None)
        if env is None:
            env = self._jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        assert self._templates is not None
        tpl = env.from_string(self._templates[cell["format"]])
        aud = cell["audience"]
        return tpl.render(  # (TEMPLATE_VARIABLES lists these)
            topic=cell["seed_text"], seed_text=cell["seed_text"], audience=aud,
            audience_desc=AUDIENCES.get(aud, aud.replace("_", " ")), format=cell["format"],
            language=cell["language"], max_seed_chars=self.params.max_seed_chars,
        )

    def requests(self, row: dict[str, Any]) -> list[tuple[dict[str, Any], int, Request]]:
        """Every (cell, sample index, request) of one row, in output order."""
        s = self.params.sampling
        out = []
        for cell in self.cells(row):
            prompt = self.render(cell)
            for k in range(self.params.samples):
                rs = int(_unit(self.params.seed, cell["seed_id"], cell["format"], cell["audience"], cell["language"], k) * 2**31)
                out.append((cell, k, Request(prompt, s.max_tokens, s.temperature, s.top_p, rs, tuple(s.stop), s.frequency_penalty, s.presence_penalty)))
        return out

    def selected(self, row: dict[str, Any]) -> bool:
        f = self.params.sample_fraction
        return f >= 1.0 or _unit("select", self.params.seed, str(row["id"])) < f

    # -- running -----------------------------------------------------------------------------

    @property
    def engine_model(self) -> str:
        return make_engine(self.params.engine).model

    def _cache(self) -> RequestCache | None:
        p = self.params
        return open_cache(p.cache, p.cache_uri, self._base_dir, self._output_uri, self._storage_options)

    def teardown(self) -> None:
        gen = getattr(self, "generator", None)
        if gen is not None:
            gen.close()

    def setup(self) -> None:
        self._ensure_prepared()
        self.generator = CachedEngine(self.params.engine, self._cache(), threads=int(self.settings.resources.cpus))

    def expand_batch(self, batch: pa.Table) -> ExpandOutput:
        if not hasattr(self, "generator"):
            self.setup()
        gen = self.generator
        rows = batch.to_pylist()
        sampling = json.dumps(self.params.sampling.model_dump(mode="json"), sort_keys=True)
        counters = dict.fromkeys(COUNTERS, 0)
        plan: list[list[tuple[dict[str, Any], int, Request]]] = []
        mask = np.zeros(len(rows), dtype=bool)
        transient = np.zeros(len(rows), dtype=bool)
        rules: list[str | None] = [None] * len(rows)
        reasons: list[str | None] = [None] * len(rows)
        for i, row in enumerate(rows):
            if not self.selected(row):
                plan.append([])
                mask[i], rules[i], reasons[i] = True, "not_sampled", f"outside sample_fraction {self.params.sample_fraction} (seed {self.params.seed})"
                continue
            plan.append(self.requests(row))
        flat = gen.complete([(req, k) for items in plan for (_cell, k, req) in items], counters)
        results: dict[tuple[int, int], Completion | RequestFailed] = {}
        at = 0
        for i, items in enumerate(plan):
            for j in range(len(items)):
                results[(i, j)] = flat[at]
                at += 1
        children: list[dict[str, Any]] = []
        parent_index: list[int] = []
        for i, items in enumerate(plan):
            if not items:
                continue
            failed = [results[(i, j)] for j in range(len(items)) if isinstance(results[(i, j)], RequestFailed)]
            if failed:
                f = failed[0]
                assert isinstance(f, RequestFailed)
                mask[i], rules[i], reasons[i], transient[i] = True, f.rule, f.reason, f.transient
                continue
            for j, (cell, k, req) in enumerate(items):
                c = results[(i, j)]
                assert isinstance(c, Completion)
                child = {
                    "text": c.text, "seed_id": cell["seed_id"], "seed_hash": _hash(cell["seed_text"]),
                    "format": cell["format"], "audience": cell["audience"], "language": cell["language"],
                    "template": cell["format"], "template_hash": _hash(self._templates[cell["format"]]) if self._templates else None,
                    "engine": gen.name, "model": gen.model, "sampling": sampling, "sample": k,
                    "request_seed": req.seed, "prompt": req.prompt, "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
                }
                if self.params.mode == "generation":
                    child["topic"] = cell["seed_text"]
                children.append(child)
                parent_index.append(i)
        table = pa.Table.from_pylist(children) if children else pa.table({})
        drops = Drops(mask=mask, rule=rules, reason=reasons, transient=transient) if mask.any() else None
        return ExpandOutput(table, np.asarray(parent_index, dtype=np.int64), drops, counters)

    # -- reporting -----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        self._ensure_prepared()
        return {
            "mode": self.params.mode, "engine": self.params.engine.name, "model": self.engine_model,
            "templates": {n: _hash(s) for n, s in (self._templates or {}).items()},
            "seeds": len(self._topics) if self._topics is not None else None,
        }

    def describe_plan(self) -> dict[str, Any]:
        """What ``curate run --dry-run`` prints: the grid, the prompts, estimated tokens and time."""
        self._ensure_prepared()
        p = self.params
        per_seed = len(self.formats) * len(p.audiences) * len(p.languages)
        tps = p.engine.tokens_per_second or DEFAULT_TOKENS_PER_SECOND[p.engine.name]
        actors = self.settings.concurrency or 1
        out: dict[str, Any] = {"mode": p.mode, "engine": p.engine.name, "model": self.engine_model,
                               "formats": len(self.formats), "audiences": len(p.audiences), "languages": len(p.languages),
                               "samples per cell": p.samples}
        if p.mode == "transformation":
            out["prompts per input row"] = per_seed * p.samples
            out["completion tokens per input row (at most)"] = per_seed * p.samples * p.sampling.max_tokens
            return out
        rows = list(self.source_rows() or [])
        pairs = [(k, r) for row in rows for (_c, k, r) in self.requests(row)]
        reqs = [r for _k, r in pairs]
        gen = CachedEngine(p.engine, self._cache(), threads=1)  # the model is not loaded
        cached = 0
        if gen.cache is not None:
            cached = len([1 for k, r in pairs if gen.cache.get(gen.key(r, k)) is not None])
        completion = (len(reqs) - cached) * p.sampling.max_tokens
        out.update({
            "seeds": len(self._topics or []),
            "grid cells": f"{len(rows)} ({len(self._topics or [])} seeds x {len(self.formats)} formats x {len(p.audiences)} audiences x {len(p.languages)} languages)",
            "prompts": len(reqs),
            "already cached": cached,
            "to generate": len(reqs) - cached,
            "estimated prompt tokens": sum(len(r.prompt) // 4 + 1 for r in reqs),
            "completion tokens (at most)": completion,
            "estimated time (at most)": f"{completion / tps / actors:.0f}s at {tps:g} tokens/s x {actors} actor(s)",
        })
        return out
