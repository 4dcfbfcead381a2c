"""The only package that knows Ray: maps curate stages onto Ray Data and runs them.

- :mod:`.apply`: one stage on one batch (pure Arrow; drop marks, Expand children, errors).
- :mod:`.driver`: the Ray Data plan: read tasks -> stages (tasks or actor pools sized from the
  stages' run settings) -> writer; global stages split it.
- :mod:`.shuffle`: global stages (keys -> hash partitions -> reduce -> resolve).
- :mod:`.writer`: Parquet shards, exact counts from the data, journal records.
- :mod:`.stats`: live counters for the progress display.
"""

from .driver import ExecPlan, execute, ray_args
from .writer import DROPPED_SCHEMA, WriteTarget

__all__ = ["ExecPlan", "execute", "ray_args", "WriteTarget", "DROPPED_SCHEMA"]
