"""curate: data curation and synthetic-data pipelines for small language and vision-language models.

Subpackages (each built from a top-level folder of the repository):

- ``curate.pipelines``: the engine: config schema, stage interface, Ray adapter, readers,
  dataset store (Delta Lake) and the ``curate`` command line.
- ``curate.filters``: quality filters (language id, heuristic rules, classifiers, dedup).
- ``curate.synth``: synthetic data generation.
- ``curate.annotation``: spoken image annotations (transcription, caption cleanup).
- ``curate._native``: the Rust core (MinHash, shingling), private.

Importing ``curate`` starts nothing: Ray is only started by ``curate run``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("curate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
