"""The publish gate: Great Expectations expectations (and curate's own checks) that a run's output
must meet before its version is published, and ``curate check`` for committed versions.

- ``spec.py``: the ``expectations:`` list of a pipeline file, validated before Ray starts
- ``checks.py``: curate_language_share, curate_duplicate_rate, curate_row_count_change (GE classes)
- ``evaluate.py``: evaluation part by part on Parquet shards (exact aggregates, bounded sample)
- ``result.py``: one GE validation result from the merged parts, its summary for the commit
- ``report.py``: JSON and an HTML page beside the run log; the lines printed for failures
- ``gate.py``: the gate in ``curate run`` and in ``curate check``; ``cli.py``: ``curate check``

Importing this package imports nothing else; Great Expectations is imported only when a pipeline
has expectations.
"""
