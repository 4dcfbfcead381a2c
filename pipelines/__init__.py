"""The engine: config schema, stage interface, Ray adapter, readers, dataset store and CLI.

- :mod:`.config`: the pipeline file's typed schema, validated before Ray starts.
- :mod:`.stage`: ``Stage``, ``Filter``, ``GlobalStage``, ``Params``, ``Resources``.
- :mod:`.registry`: stage types by name or ``module:Class``.
- :mod:`.readers`: JSONL / Parquet / text / Delta inputs as Arrow batches.
- :mod:`.ray_adapter`: the only module that maps stages onto Ray Data.
- :mod:`.store`: Delta Lake datasets, one commit per run.
- :mod:`.runner`, :mod:`.progress`, :mod:`.cli`: running, reporting, the ``curate`` command.
"""
