"""From merged aggregates to one Great Expectations validation result, and its summary.

:func:`finish` builds a GE ``ExpectationSuiteValidationResult`` (so it serialises to GE's JSON
and renders as Data Docs), one ``ExpectationValidationResult`` per expectation in the declared
order, each with ``meta.curate`` saying how it was evaluated (``exact`` or ``sample``, rows seen).
Severity is GE's own ``severity`` kwarg: ``critical`` (the default) failures block publishing;
``warning`` and ``info`` failures are reported and do not.
"""

from __future__ import annotations

import math
from typing import Any

from .aggregates import UNIQUE, Agg, rank_error
from .aggregates import metrics as aggregate_metrics
from .evaluate import EXACT_BYTES, GatePlan, Partial, Validator, exact_rows, exception_message, requested_sample
from .spec import instantiate

BLOCKING = "critical"


def _clean(value: Any) -> Any:
    """JSON-safe values: numpy scalars as Python ones, NaN as None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def finish(plan: GatePlan, total: Partial, previous_rows: int | None, reduced: dict[int, tuple[int, int, Any]] | None = None,
           examples: dict[int, list[tuple[Any, Any]]] | None = None) -> Any:
    """The validation result of every expectation of ``plan`` on the merged ``total``;
    ``reduced``: each aggregate expectation's (distinct values, rows repeating a value, largest
    value count with its values)."""
    from great_expectations import __version__ as gx_version
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    from .checks import ALLOWED_ROWS, DUPLICATE_ROWS, PREVIOUS_ROWS, ROW_COUNT

    results: list[Any] = [None] * len(plan.specs)
    sampled: dict[int, Any] = {}
    if plan.indices("whole"):
        import pyarrow as pa

        sample = total.sample if total.sample is not None else (total.schema or pa.schema([])).empty_table()
        sampled = Validator.get(plan, "whole").validate(sample.to_pandas())
    schema_checked: dict[int, Any] = {}
    if plan.indices("schema"):  # the columns alone: GE on an empty frame with the schema
        import pyarrow as pa

        schema_checked = Validator.get(plan, "schema").validate((total.schema or pa.schema([])).empty_table().to_pandas())
    sample_n = 0 if total.sample is None else total.sample.num_rows
    for i, (spec, method) in enumerate(zip(plan.specs, plan.methods)):
        expectation = instantiate(spec)
        meta: dict[str, Any] = {"method": "exact", "rows": total.rows, "declared_at": spec.where}
        error = total.errors.get(i)
        outcome: dict[str, Any]
        if method == "schema":
            r = schema_checked[i]
            error = exception_message(r)
            outcome = {"success": bool(r.success), "result": r.result or {}}
        elif method == "whole":
            r = sampled[i]
            exact = sample_n == total.rows
            error = exception_message(r) if exact or requested_sample(spec) else _too_large(total.rows, sample_n)
            outcome = {"success": bool(r.success), "result": r.result or {}} if error is None else {"success": False, "result": {}}
            meta.update(method="exact" if exact else "sample", **({} if exact else {"sample_rows": sample_n}))
        elif error is not None:
            outcome = {"success": False, "result": {}}
        elif method == "map":
            outcome = _map_outcome(total.maps.get(i), getattr(expectation, "mostly", 1.0))
        elif method == "rows":
            outcome = expectation._validate({ROW_COUNT: total.rows})
        elif method == "aggregate":
            agg = total.aggs.get(i) or Agg()
            outcome = _aggregate_outcome(spec, expectation, agg, (reduced or {}).get(i, (0, 0, None)), (examples or {}).get(i, []))
            if agg.sketch is not None:  # a quantile from the merged sketch: said so, with its error
                meta.update(method="approximate", rank_error=rank_error())
        else:
            # rows repeating an earlier row's value: non-null rows less distinct values
            repeats = (total.aggs[i].n - (reduced or {}).get(i, (0, 0, None))[0]) if i in total.aggs else 0
            metrics = {ROW_COUNT: total.rows, ALLOWED_ROWS: total.allowed.get(i, 0), DUPLICATE_ROWS: repeats, PREVIOUS_ROWS: previous_rows}
            outcome = expectation._validate(metrics)
        result = {k: _clean(v) if not isinstance(v, (list, dict)) else v for k, v in (outcome.get("result") or {}).items()}
        if "partial_unexpected_list" in result:
            result["partial_unexpected_list"] = [_clean(v) for v in result["partial_unexpected_list"]]
        results[i] = ExpectationValidationResult(
            success=bool(outcome["success"]) and error is None,
            expectation_config=expectation.configuration,
            result=result,
            meta={"curate": meta},
            exception_info={"raised_exception": error is not None, "exception_message": error, "exception_traceback": None},
        )
    blocking = [r for r in results if not r.success and severity_of(r) == BLOCKING]
    ok = sum(1 for r in results if r.success)
    statistics = {
        "evaluated_expectations": len(results),
        "successful_expectations": ok,
        "unsuccessful_expectations": len(results) - ok,
        "success_percent": 100.0 * ok / len(results) if results else 100.0,
    }
    return ExpectationSuiteValidationResult(
        success=not blocking,
        results=results,
        suite_name="curate publish gate",
        statistics=statistics,
        meta={"great_expectations_version": gx_version, "curate": {"rows": total.rows, "sample_rows": sample_n, "previous_rows": previous_rows}},
    )


def _too_large(rows: int, seen: int) -> str:
    return (f"not evaluated: it needs every row of its columns in one process, and curate gathers at most "
            f"{exact_rows():,} rows and {EXACT_BYTES // 1024**2} MiB of them ({rows:,} rows here, {seen:,} gathered); "
            "curate does not sample on its own: to judge it on a sample, ask for one with `meta: {sample_rows: N}`")


def _aggregate_outcome(spec: Any, expectation: Any, agg: Agg, reduced: tuple[int, int, Any],
                       examples: list[tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """GE's own verdict on the exact merged metrics (:mod:`.aggregates`); ``examples``: rows
    (id, value) of a failed uniqueness expectation."""
    distinct, dup_rows, top = reduced
    if spec.type in UNIQUE:  # a map expectation: rows sharing their value are unexpected
        ids = [str(i) for i, _ in examples or [] if i is not None]
        counts = {"element_count": agg.rows, "nonnull_count": agg.n, "unexpected_count": dup_rows,
                  "partial": [v for _, v in examples or []], **({"ids": ids} if ids else {})}
        return _map_outcome(counts, getattr(expectation, "mostly", 1.0))
    return dict(expectation._validate(aggregate_metrics(spec, agg, distinct, dup_rows, top)))


def _map_outcome(counts: dict[str, Any] | None, mostly: float | None) -> dict[str, Any]:
    """GE's verdict for a map expectation from counts over every batch: vacuously true without
    non-null rows, else (non-null - unexpected) / non-null >= mostly."""
    counts = counts or {"element_count": 0, "nonnull_count": 0, "unexpected_count": 0, "partial": []}
    if counts.get("column_failure") is not None:  # the column itself failed (its type), whatever its rows
        return {"success": False, "result": {"observed_value": counts["column_failure"]}}
    if counts.get("column_observed") is not None:  # ... or passed as a whole
        return {"success": True, "result": {"observed_value": counts["column_observed"]}}
    element, nonnull, unexpected = counts["element_count"], counts["nonnull_count"], counts["unexpected_count"]
    mostly = 1.0 if mostly is None else float(mostly)
    success = element == 0 or nonnull == 0 or (nonnull - unexpected) / nonnull >= mostly
    missing = element - nonnull
    return {
        "success": success,
        "result": {
            "element_count": element,
            "unexpected_count": unexpected,
            "unexpected_percent": 100.0 * unexpected / nonnull if nonnull else None,
            "missing_count": missing,
            "missing_percent": 100.0 * missing / element if element else None,
            "unexpected_percent_total": 100.0 * unexpected / element if element else None,
            "partial_unexpected_list": counts["partial"],
            **({"partial_unexpected_ids": counts["ids"]} if counts.get("ids") else {}),
        },
    }


def severity_of(result: Any) -> str:
    sev = getattr(result.expectation_config, "severity", None)
    return str(getattr(sev, "value", sev) or BLOCKING)


def observed(result: Any) -> str:
    """The observed value of one expectation's result, in words."""
    r = result.result or {}
    info = (result.exception_info or {})
    if info.get("raised_exception"):
        return f"could not be evaluated: {info.get('exception_message')}"
    if "unexpected_count" in r and "observed_value" not in r:
        pct = r.get("unexpected_percent")
        text = f"{r.get('unexpected_count')} unexpected of {r.get('element_count')} rows"
        if pct is not None:
            text += f" ({pct:.3g}%" + (f" of the non-null; {r['missing_count']} null)" if r.get("missing_count") else ")")
        if r.get("partial_unexpected_list"):
            text += f", e.g. {[_short(v) for v in r['partial_unexpected_list'][:5]]}"
        if r.get("partial_unexpected_ids"):
            text += f"; rows (id) {r['partial_unexpected_ids'][:5]}"
        return text
    value = r.get("observed_value")
    details = r.get("details") or {}
    if value is None and (r.get("partial_unexpected_list") or r.get("partial_missing_list")):  # distinct values vs a set
        parts = []
        if r.get("partial_unexpected_list"):
            parts.append(f"{r.get('unexpected_count')} distinct value(s) not in the set: {[_short(v) for v in r['partial_unexpected_list'][:20]]}")
        if r.get("partial_missing_list"):
            parts.append(f"{r.get('missing_count')} value(s) of the set missing from the column: {[_short(v) for v in r['partial_missing_list'][:20]]}")
        return "; ".join(parts)
    if value is None and result.expectation_config.type.startswith("expect_column_distinct_values_"):
        return "the distinct values are as expected"
    if isinstance(value, float):
        value = f"{value:.6g}"
    text = f"observed {value}"
    if details.get("previous_row_count") is not None:
        text += f" (previous version {details['previous_row_count']} rows, this one {r.get('element_count')})"
    return text


def _short(value: Any) -> Any:
    return value[:60] + "..." if isinstance(value, str) and len(value) > 60 else value


def summary(result: Any) -> dict[str, Any]:
    """What goes into the commit metadata (lineage): statistics and each expectation's outcome."""
    items = []
    for r in result.results:
        cfg = r.expectation_config
        meta = (r.meta or {}).get("curate", {})
        kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
        items.append({
            "type": cfg.type,
            "kwargs": kwargs,
            "severity": severity_of(r),
            "success": bool(r.success),
            "observed": observed(r),
            "method": meta.get("method"),
            **({"sample_rows": meta["sample_rows"]} if meta.get("method") == "sample" else {}),
            **({"rank_error": meta["rank_error"]} if meta.get("method") == "approximate" else {}),
        })
    curate_meta = (result.meta or {}).get("curate", {})
    return {
        "success": bool(result.success),
        "statistics": dict(result.statistics),
        "rows": curate_meta.get("rows"),
        "great_expectations_version": (result.meta or {}).get("great_expectations_version"),
        "expectations": items,
    }


def failures(result: Any) -> list[tuple[str, Any]]:
    """``(severity, result)`` of each expectation that did not pass."""
    return [(severity_of(r), r) for r in result.results if not r.success]
