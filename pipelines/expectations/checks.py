"""curate-level checks that Great Expectations cannot express alone, as GE expectation classes.

Defining them registers them in GE's registry under their snake-case names, so they are
validated (pydantic kwargs), listed, serialised and rendered in Data Docs like GE's own. Their
metrics are computed by curate, exactly, from every row of the staged output (see
``evaluate.py``); each class's ``_validate`` decides success from those metrics.

- ``curate_language_share``: the share of rows whose ``column`` is one of ``allowed``
  (a null counts as not allowed) is at least ``min_share``.
- ``curate_duplicate_rate``: the share of rows whose ``column`` value (compared by its 64-bit
  xxh3 hash) equals an earlier row's is at most ``max_rate``; nulls (and NaN, as in Great
  Expectations' checks on pandas) are never duplicates.
- ``curate_row_count_change``: the version's rows divided by the previous version's rows lies in
  ``[min_ratio, max_ratio]``; passes when there is no previous version (the first run).

The classes are defined (and Great Expectations imported) by :func:`register`, called only when a
pipeline has expectations.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

from .environment import ge_environment

#: the metrics curate computes for these checks (names of keys in ``_validate``'s ``metrics``)
ROW_COUNT = "table.row_count"
ALLOWED_ROWS = "curate.allowed_rows"
DUPLICATE_ROWS = "curate.duplicate_rows"
PREVIOUS_ROWS = "curate.previous_row_count"


@functools.cache
def register() -> dict[str, type]:
    """Define the checks (once per process), which registers them in GE's registry; returns the
    classes by name. (Defined in a function: importing this module imports nothing optional.)"""
    with ge_environment():
        from great_expectations.compatibility.pydantic import Field
        from great_expectations.expectations.expectation import BatchExpectation

    class CurateLanguageShare(BatchExpectation):
        """Expect the share of rows whose language column is one of the allowed languages to be at least min_share."""

        column: str = Field("language", description="the column holding each row's language code")
        allowed: list[str] = Field(..., min_items=1, description="the allowed language codes")
        min_share: float = Field(..., ge=0.0, le=1.0, description="the smallest share of rows in an allowed language")

        domain_keys: ClassVar[tuple[str, ...]] = ("column",)
        success_keys: ClassVar[tuple[str, ...]] = ("allowed", "min_share")
        metric_dependencies: ClassVar[tuple[str, ...]] = ()

        def _validate(self, metrics: dict[str, Any], runtime_configuration: Optional[dict] = None, execution_engine: Any = None) -> dict[str, Any]:
            rows, allowed = int(metrics[ROW_COUNT]), int(metrics[ALLOWED_ROWS])
            share = allowed / rows if rows else None
            return {
                "success": share is None or share >= self.min_share,
                "result": {"observed_value": share, "element_count": rows, "allowed_count": allowed, "details": {"exact": True}},
            }


    class CurateDuplicateRate(BatchExpectation):
        """Expect the share of rows repeating an earlier row's value of the column to be at most max_rate."""

        column: str = Field("text", description="the column compared (by a 64-bit hash of its value)")
        max_rate: float = Field(..., ge=0.0, le=1.0, description="the largest share of duplicate rows")

        domain_keys: ClassVar[tuple[str, ...]] = ("column",)
        success_keys: ClassVar[tuple[str, ...]] = ("max_rate",)
        metric_dependencies: ClassVar[tuple[str, ...]] = ()

        def _validate(self, metrics: dict[str, Any], runtime_configuration: Optional[dict] = None, execution_engine: Any = None) -> dict[str, Any]:
            rows, dups = int(metrics[ROW_COUNT]), int(metrics[DUPLICATE_ROWS])
            rate = dups / rows if rows else 0.0
            return {
                "success": rate <= self.max_rate,
                "result": {"observed_value": rate, "element_count": rows, "duplicate_count": dups, "details": {"exact": True}},
            }


    class CurateRowCountChange(BatchExpectation):
        """Expect the row count divided by the previous version's row count to be between min_ratio and max_ratio."""

        min_ratio: Optional[float] = Field(None, ge=0.0, description="the smallest allowed ratio (none: no lower bound)")
        max_ratio: Optional[float] = Field(None, ge=0.0, description="the largest allowed ratio (none: no upper bound)")

        domain_keys: ClassVar[tuple[str, ...]] = ()
        success_keys: ClassVar[tuple[str, ...]] = ("min_ratio", "max_ratio")
        metric_dependencies: ClassVar[tuple[str, ...]] = ()

        def _validate(self, metrics: dict[str, Any], runtime_configuration: Optional[dict] = None, execution_engine: Any = None) -> dict[str, Any]:
            rows, previous = int(metrics[ROW_COUNT]), metrics.get(PREVIOUS_ROWS)
            if previous is None:
                return {"success": True, "result": {"observed_value": None, "element_count": rows, "details": {"previous_row_count": None, "note": "no previous version"}}}
            previous = int(previous)
            ratio = rows / previous if previous else (1.0 if rows == 0 else float("inf"))
            ok = (self.min_ratio is None or ratio >= self.min_ratio) and (self.max_ratio is None or ratio <= self.max_ratio)
            return {"success": ok, "result": {"observed_value": ratio, "element_count": rows, "details": {"previous_row_count": previous}}}

    return {"curate_language_share": CurateLanguageShare, "curate_duplicate_rate": CurateDuplicateRate,
            "curate_row_count_change": CurateRowCountChange}


CURATE_CHECKS = ("curate_language_share", "curate_duplicate_rate", "curate_row_count_change")
