"""The request cache: one small JSON file per completion, keyed by (prompt, model, engine, sampling
parameters, sample index), kept in the output dataset's folder (``DATASET/_curate_synth_cache/``,
which Delta readers and ``curate vacuum`` ignore), on local disk or an object store alike.

A completion is written the moment it exists (atomically, :func:`curate.pipelines.fs.write_bytes`),
so a run killed mid-generation and started again, or a repeated run, asks the engine only for
what is not there yet. Entries are never invalidated: change any part of the key to regenerate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from curate.pipelines import fs

from .engines import Completion, Request

CACHE_FOLDER = "_curate_synth_cache"


def request_key(engine: str, model: str, req: Request, sample: int) -> str:
    """The cache key of one generation (hex sha256)."""
    sampling: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                                "seed": req.seed, "stop": list(req.stop)}
    # penalties join the key only when set, so the keys of completions cached without them stay valid
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            sampling[name] = getattr(req, name)
    ident = {"engine": engine, "model": model, "prompt": req.prompt, "sample": sample, "sampling": sampling}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options or None

    def _path(self, key: str) -> str:
        return fs.join(self.uri, key[:2], f"{key}.json")

    def get(self, key: str) -> Completion | None:
        try:
            raw = fs.read_bytes(self._path(key), self.storage_options)
        except FileNotFoundError:
            return None
        try:
            d: dict[str, Any] = json.loads(raw)
            return Completion(d["text"], int(d["prompt_tokens"]), int(d["completion_tokens"]), str(d["finish_reason"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: generate again (and overwrite it)

    def put(self, key: str, c: Completion) -> None:
        data = {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason}
        fs.write_bytes(self._path(key), json.dumps(data, ensure_ascii=False).encode(), self.storage_options)

    def count(self) -> int:
        """Entries stored (walks the folder: for tests and ``--dry-run``)."""
        return sum(len([n for n in fs.list_dir(fs.join(self.uri, d), self.storage_options) if n.endswith(".json")])
                   for d in fs.list_dir(self.uri, self.storage_options))
