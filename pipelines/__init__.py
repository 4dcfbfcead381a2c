"""The engine: config schema, stage interface, plan check, execution on Ray, readers, dataset store and CLI.

- :mod:`.config`: the pipeline file's typed schema (per-stage ``run:`` settings included),
  validated before Ray starts.
- :mod:`.stage`: the stage kinds ``Stage``, ``Filter``, ``Expand``, ``GlobalStage``; ``Params``,
  ``Resources``, ``RunSettings``, ``DropRow``.
- :mod:`.plan`: the plan check (every column a stage reads is produced before it); no Ray.
- :mod:`.registry`: stage types and ``curate`` subcommands from the ``curate.stages`` /
  ``curate.commands`` entry points, or ``module:Class``.
- :mod:`.readers`: JSONL / Parquet / text / Delta inputs and generator source rows as Arrow batches.
- :mod:`.execution`: the only package that knows Ray: maps stages onto Ray Data (apply, driver,
  shuffle, writer, stats).
- :mod:`.journal`: the run journal that lets a killed run resume.
- :mod:`.store`, :mod:`.fs`: Delta Lake datasets (one commit per run, run keys, concurrent
  writers, delta inputs); the filesystem/path helper.
- :mod:`.preflight`: inputs, columns and the output, checked before Ray starts.
- :mod:`.session`: the run's log file, environment and Ray, all undone when it ends.
- :mod:`.runner`, :mod:`.api`, :mod:`.progress`, :mod:`.cli`: running, ``curate.run``, reporting,
  the ``curate`` command.
"""
