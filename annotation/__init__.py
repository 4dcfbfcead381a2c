"""Spoken image annotations: annotators describe images out loud, Whisper transcribes the clips,
a language model cleans the transcripts into captions.

- the annotators' web app and its storage: ``app`` (``create_app(settings)``), ``api``, ``auth``,
  ``upload``, ``audio`` (PyAV decoding), ``store`` (blobs by SHA-256), ``db`` (SQLAlchemy),
  ``images``, ``export`` (clips -> the clips Delta dataset), ``cli`` (``curate annotate``);
- the pipeline stages ``transcribe`` and ``caption`` (registered as ``curate.stages``).

Nothing here imports the ``annotation`` extra's packages at import time.
"""
