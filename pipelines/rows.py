"""The engine's row contract: the internal columns a row carries through a run, apart from the
plugin API (:mod:`.stage`). Rows carry them from the reader to the writer, which removes them;
a stage sees the row's own columns plus ``_curate_pos``, and the engine keeps the rest.
"""

from __future__ import annotations

#: internal columns carried along the stream, removed before writing
POS = "_curate_pos"
TASK = "_curate_task"
WEIGHT = "_curate_w"
#: the Expand stage that created a row (null for input rows)
BORN = "_curate_born"
#: drop rule of the marker an expanded parent leaves in the stream (counted, never written)
EXPANDED = "_expanded"
DROP_STAGE = "_drop_stage"
DROP_RULE = "_drop_rule"
DROP_REASON = "_drop_reason"
DUPLICATE_OF = "_duplicate_of"
DROP_COLUMNS = (DROP_STAGE, DROP_RULE, DROP_REASON, DUPLICATE_OF)
#: True on a row dropped for a transient reason (an engine down, a timeout): it is not dropped for
#: good but kept aside as pending and retried by the next run (see :class:`DropRow`)
DROP_RETRY = "_drop_retry"
#: on a pending row fed back into a run: the label of the stage it failed in; the stages before
#: it pass the row through untouched (what they computed is kept), that stage clears the mark
RESUME_AT = "_curate_from"
#: what the engine keeps aside while a stage runs (the stage sees POS)
ENGINE_COLUMNS = (TASK, WEIGHT, BORN, *DROP_COLUMNS, DROP_RETRY, RESUME_AT)
INTERNAL_COLUMNS = (POS, *ENGINE_COLUMNS)
#: the column children of an Expand stage name their parent in
PARENT_ID = "parent_id"
#: one input row's weight; children split their parent's weight exactly (integers)
ROW_WEIGHT = 1 << 32
