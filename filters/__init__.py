"""Quality filters: stages discovered by the registry (one module, one or more stages).

- :mod:`.language` (``language``): fastText lid.176 language identification, offline.
- :mod:`.rules` (``gopher_repetition``, ``gopher_quality``, ``c4_quality``, ``fineweb_quality``):
  datatrove's heuristic rule sets with one shared tokenisation per document.
- :mod:`.quality_classifier` (``quality_classifier``) and :mod:`.quality_cli` (``curate quality``):
  fastText quality classifiers.
- :mod:`.pii` (``pii``): e-mail / IP / phone redaction.
- :mod:`.decontaminate` (``decontaminate``): benchmark n-gram overlap.

Heavy dependencies (datatrove, spaCy, fastText, matplotlib) are imported inside functions.
See docs/quality.md.
"""
