"""``caption``: a spoken image description's transcript -> a clean, dense caption (PixMo-style).

A one-to-one :class:`~curate.pipelines.stage.Stage`: each row's ``transcript`` is put into a
prompt template (``annotation/templates/caption.jinja`` by default, or ``template: FILE``) and
completed by one of the synth engines (:mod:`curate.synth.engines`: ``llama_cpp`` on CPU with the
bundled Gemma 3 270M by default, ``openai`` for any OpenAI-compatible server, ``vllm`` on GPUs),
with synth's engine settings, retries and request cache (:mod:`curate.synth.cache`, in
``DATASET/_curate_synth_cache``: a rerun asks the engine only for captions not made yet).

Columns written: ``caption`` (the completion, stripped) and ``caption_model``
(``ENGINE:MODEL``); the raw transcript stays. Rows are dropped, with a rule and a reason, when
the transcript is empty or shorter than ``min_words`` (``empty_transcript``), carries
hallucination flags from ``transcribe`` (``flagged_transcript``, with ``drop_flagged``), the
request failed (``request_failed``, the engine's message: for good on a 4xx, transiently when
the engine is down or timing out, so the clip is retried by the next run), the model returned nothing
(``empty_caption``), the caption is mostly words the transcript does not have
(``unfaithful_caption``, ``min_support``: invented content, e.g. a small model copying the
prompt's example) or ran into ``sampling.max_tokens`` (``truncated_caption``, with
``drop_truncated``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import Drops, Resources, Stage, StageOutput
from curate.synth.engines import Completion, Request, RequestFailed, make_engine
from curate.synth.generation import COUNTERS, CachedEngine, GenerationParams, SamplingParams, open_cache
from pydantic import Field

TEMPLATE = Path(__file__).parent / "templates" / "caption.jinja"

#: what a template must do with the transcript: ``check`` renders it with this and looks for it
_PROBE = "\x00transcript-probe\x00"


class CaptionSampling(SamplingParams):
    """Sampling for captions: greedy by default (a caption must say what the transcript says, no
    more), one paragraph (the bundled base model goes on after it with lists or another example;
    set ``stop`` to ``["\nTranscript:"]`` for a model that writes several paragraphs)."""

    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(384, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["\n"])


class CaptionParams(GenerationParams):
    transcript_column: str = Field("transcript", description="the column holding the transcript")
    template: str | None = Field(None, description="a Jinja prompt template (relative to the pipeline file); variable: transcript")
    max_transcript_chars: int = Field(6000, ge=1, description="characters of the transcript put in the prompt")
    min_words: int = Field(1, ge=1, description="transcripts with fewer words are dropped (rule empty_transcript)")
    drop_flagged: bool = Field(True, description="drop rows whose flags_column lists any flag (rule flagged_transcript)")
    flags_column: str = Field("transcript_flags", description="list<string> column of hallucination flags (transcribe's)")
    min_support: float = Field(0.5, ge=0, le=1, description="share of the caption's words that must occur in the transcript, else it is dropped as unfaithful_caption (invented, or copied from the prompt's examples); 0: off")
    drop_truncated: bool = Field(True, description="drop captions cut off at sampling.max_tokens (rule truncated_caption)")
    seed: int = Field(0, description="request seeds are derived from it and the transcript")
    sampling: CaptionSampling = Field(default_factory=CaptionSampling)


_WORD = re.compile(r"\w+")


def support(caption: str, transcript: str) -> float:
    """The share of the caption's words (lowercased) that occur in the transcript: a rewrite keeps
    the speaker's words; a caption made of other words says things the annotator did not."""
    words = _WORD.findall(caption.lower())
    if not words:
        return 0.0
    heard = set(_WORD.findall(transcript.lower()))
    return sum(w in heard for w in words) / len(words)


def _environment() -> Any:
    import jinja2

    # the file's final newline is dropped (Jinja's default): the prompt ends at "Caption:"
    return jinja2.Environment(undefined=jinja2.StrictUndefined)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Caption(Stage[CaptionParams]):
    """Transcript -> caption (PixMo-style cleanup) through llama_cpp (CPU default), an OpenAI-compatible server or vLLM, cached; empty or flagged transcripts dropped with a reason."""

    name = "caption"
    Params = CaptionParams
    stateful = True
    batch_size = 8
    resources = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("transcript", "transcript_flags")  # by default (input_columns: from the params)
    writes: ClassVar[tuple[str, ...]] = ("caption", "caption_model")
    #: a caption from an earlier stage or the input is replaced (captioning again)
    rewrites: ClassVar[tuple[str, ...]] = ("caption", "caption_model")

    def __init__(self, params: CaptionParams) -> None:
        super().__init__(params)
        self._base_dir: Path | None = None
        self._template: str | None = None
        self._output_uri: str | None = None
        self._storage_options: dict[str, str] = {}

    # -- declarations ------------------------------------------------------------------------

    def input_columns(self) -> tuple[str, ...]:
        p = self.params
        return (p.transcript_column, *((p.flags_column,) if p.drop_flagged else ()))

    def check(self, base_dir: Path) -> None:
        from curate.synth.engines import check_installed

        check_installed(self.params.engine, "stage caption")
        self._load_template(base_dir)

    def bind_output(self, dataset_uri: str, storage_options: dict[str, str] | None = None) -> None:
        self._output_uri = dataset_uri
        self._storage_options = dict(storage_options or {})

    def _load_template(self, base_dir: Path) -> str:
        """Read and check the template (on the driver: workers get its text, not the file)."""
        self._base_dir = base_dir
        path = base_dir / self.params.template if self.params.template else TEMPLATE
        if not path.is_file():
            raise ConfigError(f"stage caption: template {self.params.template!r} not found (looked at {path})",
                              hint="give a .jinja file relative to the pipeline file, or leave `template` unset for the shipped one")
        text = path.read_text(encoding="utf-8")
        try:
            import jinja2
        except ImportError as exc:
            raise ConfigError("stage caption needs the synth extra: pip install 'curate[synth]'") from exc
        try:
            rendered = _environment().from_string(text).render(transcript=_PROBE)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"stage caption: template {path}: {type(exc).__name__}: {exc}") from None
        if _PROBE not in rendered:
            raise ConfigError(f"stage caption: template {path} never puts the transcript in the prompt",
                              hint="use {{ transcript }} where the transcript goes")
        self._template = text
        return text

    def __getstate__(self) -> dict[str, Any]:
        # the compiled template stays behind: each worker compiles the text it is sent
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

    # -- prompts -------------------------------------------------------------------------------

    def prompt(self, transcript: str) -> str:
        if self._template is None:
            self._load_template(self._base_dir or Path.cwd())
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            assert self._template is not None
            compiled = self._compiled = _environment().from_string(self._template)
        return str(compiled.render(transcript=transcript.strip()[: self.params.max_transcript_chars]))

    def request(self, transcript: str) -> Request:
        s = self.params.sampling
        seed = int(_sha(json.dumps([self.params.seed, transcript]))[:8], 16) % 2**31
        return Request(self.prompt(transcript), s.max_tokens, s.temperature, s.top_p, seed, tuple(s.stop),
                       s.frequency_penalty, s.presence_penalty)

    def skip_reason(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """Why a row gets no caption (rule, reason), or None."""
        p = self.params
        text = row.get(p.transcript_column)
        words = len(text.split()) if isinstance(text, str) else 0
        if words < p.min_words:
            shown = "no transcript" if text is None else f"transcript of {words} word(s)"
            return "empty_transcript", f"{shown}; at least {p.min_words} needed (min_words)"
        if p.drop_flagged:
            flags = [f for f in (row.get(p.flags_column) or []) if f]
            if flags:
                return "flagged_transcript", f"transcript flagged as a likely hallucination: {', '.join(map(str, flags))} (drop_flagged)"
        return None

    # -- running -------------------------------------------------------------------------------

    @property
    def model_label(self) -> str:
        gen = getattr(self, "generator", None)  # set by setup() on a worker; metadata() runs on the driver
        eng = gen.engine if gen is not None else make_engine(self.params.engine)
        return f"{eng.name}:{eng.model}"

    def teardown(self) -> None:
        gen = getattr(self, "generator", None)
        if gen is not None:
            gen.close()

    def setup(self) -> None:
        if self._template is None:
            self._load_template(self._base_dir or Path.cwd())
        p = self.params
        cache = open_cache(p.cache, p.cache_uri, self._base_dir, self._output_uri, self._storage_options)
        self.generator = CachedEngine(p.engine, cache, threads=int(self.settings.resources.cpus))

    def process(self, batch: pa.Table) -> StageOutput:
        if not hasattr(self, "generator"):
            self.setup()
        rows = batch.to_pylist()
        n = len(rows)
        counters = dict.fromkeys(COUNTERS, 0) | {"empty_transcripts": 0, "flagged_transcripts": 0, "empty_captions": 0, "unfaithful_captions": 0}
        mask = np.zeros(n, dtype=bool)
        rules: list[str | None] = [None] * n
        reasons: list[str | None] = [None] * n
        asked: list[int] = []
        transient = np.zeros(n, dtype=bool)
        for i, row in enumerate(rows):
            skip = self.skip_reason(row)
            if skip is not None:
                mask[i], (rules[i], reasons[i]) = True, skip
                counters["empty_transcripts" if skip[0] == "empty_transcript" else "flagged_transcripts"] += 1
                continue
            asked.append(i)
        answers = self.generator.complete([(self.request(rows[i][self.params.transcript_column]), 0) for i in asked], counters)
        results: dict[int, Completion | RequestFailed] = dict(zip(asked, answers))
        captions: list[str | None] = [None] * n
        for i, result in results.items():
            if isinstance(result, RequestFailed):  # a transient failure keeps the row (and its transcript) for the next run
                mask[i], rules[i], reasons[i], transient[i] = True, result.rule, result.reason, result.transient
                continue
            text = result.text.strip()
            if not text:
                counters["empty_captions"] += 1
                mask[i], rules[i], reasons[i] = True, "empty_caption", f"{self.model_label} returned no caption (finish_reason {result.finish_reason})"
                continue
            if result.finish_reason == "length" and self.params.drop_truncated:
                mask[i], rules[i], reasons[i] = True, "truncated_caption", f"the caption reached sampling.max_tokens ({self.params.sampling.max_tokens}) unfinished (drop_truncated)"
                continue
            share = support(text, rows[i][self.params.transcript_column])
            if share < self.params.min_support:
                counters["unfaithful_captions"] += 1
                mask[i], rules[i], reasons[i] = True, "unfaithful_caption", (
                    f"only {share:.0%} of the caption's words occur in the transcript (min_support {self.params.min_support:g}): {text[:200]!r}")
                continue
            captions[i] = text
        label = self.model_label
        model = [None if mask[i] else label for i in range(n)]
        table = batch
        for name, values in (("caption", captions), ("caption_model", model)):
            if name in table.schema.names:  # a caption from an earlier stage or the input is replaced
                table = table.drop_columns([name])
            table = table.append_column(name, pa.array(values, pa.string()))
        drops = Drops(mask=mask, rule=rules, reason=reasons, transient=transient) if mask.any() else None
        return StageOutput(table, drops, counters)

    # -- reporting -----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        text = self._template if self._template is not None else self._load_template(self._base_dir or Path.cwd())
        return {"engine": self.params.engine.name, "model": self.model_label, "template": self.params.template or "caption.jinja (shipped)",
                "template_hash": _sha(text)[:16], "sampling": self.params.sampling.model_dump(mode="json")}

    def describe_plan(self) -> dict[str, Any]:
        return {"engine": self.params.engine.name, "model": self.model_label, "template": self.params.template or "caption.jinja (shipped)",
                "max tokens per caption": self.params.sampling.max_tokens}
