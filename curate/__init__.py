"""curate: data curation and synthetic-data pipelines for small language and vision-language models.

Subpackages (each built from a top-level folder of the repository):

- ``curate.pipelines``: the engine: config schema, stage interface, plan check, execution on
  Ray (``curate.pipelines.execution``), readers, dataset store (Delta Lake), run journal, the
  Python API and the ``curate`` command line.
- ``curate.filters``: quality filters (language id, heuristic rules, classifiers, dedup).
- ``curate.synth``: synthetic data generation.
- ``curate.annotation``: spoken image annotations (transcription, caption cleanup).
- ``curate._native``: the Rust core (MinHash, shingling), private.

Importing ``curate`` starts nothing and imports no engine module: Ray is only started by
``curate run`` or :func:`curate.run`.

    import curate
    result = curate.run("pipeline.yaml", run_key="2026-12-03")  # -> RunResult
"""

from curate._version import __version__

__all__ = ["__version__", "run", "load", "RunResult"]


def __getattr__(name: str) -> object:
    # the API is loaded on first use, so `import curate` stays free of side effects and fast
    if name in ("run", "load", "RunResult"):
        from curate.pipelines import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
