"""The ``expectations:`` list of a pipeline file (or of a file given to ``curate check``), parsed
and validated before Ray starts.

Each item is one expectation in Great Expectations' own vocabulary, a curate-level check, or a
suite file::

    expectations:
      - expect_column_values_to_not_be_null: {column: text}
      - expect_table_row_count_to_be_between: {min_value: 1000}
      - curate_language_share: {column: language, allowed: [en], min_share: 0.95}
      - suite: checks/web_suite.json        # a GE suite file (JSON or YAML)

Names are resolved in GE's registry (and curate's checks, registered there too) and the kwargs
checked by instantiating the expectation, so an unknown name or a bad kwarg is a
:class:`ConfigError` naming the file, line and key (with a suggestion for a near-miss name).
Great Expectations is imported only when a pipeline has expectations.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..yamlsource import Key, Located, format_key, load_yaml
from .environment import ge_environment

#: expectations that need a SQL database or another table: not evaluable on a dataset's shards
UNSUPPORTED = {
    "expect_table_row_count_to_equal_other_table": "it compares with another SQL table",
    "expect_query_results_to_match_comparison": "it runs SQL queries",
    "unexpected_rows_expectation": "it runs a SQL query",
}
#: GE kwargs curate sets itself
RESERVED_KWARGS = ("batch_id", "windows", "rendered_content", "result_format")


@dataclasses.dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: its GE type name, its kwargs, and where it was declared (file:line, key)."""

    type: str
    kwargs: dict[str, Any]
    where: str
    key: str

    def label(self) -> str:
        """``type(kwarg=value, ...)`` without GE's bookkeeping kwargs, for reports."""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k not in ("meta", "notes", "description"))
        return f"{self.type}({shown})"

    def as_dict(self) -> dict[str, Any]:
        return {self.type: dict(self.kwargs)}


def registry() -> tuple[Any, list[str]]:
    """GE's ``get_expectation_impl`` and every registered name (curate's checks included)."""
    with ge_environment():
        from great_expectations.expectations.registry import get_expectation_impl, list_registered_expectation_implementations

        from .checks import register

        register()  # curate_* in GE's registry

    return get_expectation_impl, sorted(list_registered_expectation_implementations())


def parse_expectations(raw: Any, located: Located, base_dir: Path, prefix: Key = ("expectations",),
                       columns: tuple[list[str], str] | None = None) -> list[ExpectationSpec]:
    """Every item of an ``expectations:`` list, suite files expanded, each validated; every bad
    item is reported (one :class:`ConfigError` with a line per problem)."""
    if raw is None or raw == []:
        return []
    if not isinstance(raw, list):
        raise ConfigError(
            f"{located.where(prefix)}: {format_key(prefix)}: expectations must be a list",
            hint="write e.g. `- expect_column_values_to_not_be_null: {column: text}`, one item per expectation",
        )
    specs: list[ExpectationSpec] = []
    problems: list[ConfigError] = []
    for i, item in enumerate(raw):
        key: Key = (*prefix, i)
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(ConfigError(
                f"{located.where(key)}: {format_key(key)}: each expectation is a mapping of one name to its kwargs",
                hint="e.g. `- expect_column_values_to_not_be_null: {column: text}` or `- suite: path/to/suite.json`",
            ))
            continue
        (name, kwargs), = item.items()
        name = str(name)
        if name == "suite":
            try:
                specs += _load_suite(kwargs, located, key + (name,), base_dir)
            except ConfigError as exc:
                problems.append(exc)
            continue
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            problems.append(ConfigError(f"{located.where(key + (name,))}: {format_key(key + (name,))}: the kwargs of an expectation must be a mapping (got {kwargs!r})"))
            continue
        specs.append(ExpectationSpec(name, dict(kwargs), located.where(key + (name,)), format_key(key + (name,))))
    for spec in specs:
        try:
            check_spec(spec)
        except ConfigError as exc:
            problems.append(exc)
    if columns is not None:  # (the data's columns, what they are): unknown columns in the same report
        problems += column_problems(specs, *columns)
    if problems:
        from ..errors import combine_errors

        raise combine_errors(problems)
    return specs


def _load_suite(value: Any, located: Located, key: Key, base_dir: Path) -> list[ExpectationSpec]:
    """A GE suite file (``{"name": ..., "expectations": [{"type": ..., "kwargs": {...}}]}``, JSON or
    YAML; ``expectation_type`` as in GE 0.x is read too)."""
    where = located.where(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {format_key(key)}: a suite is a file path (got {value!r})", hint="e.g. `- suite: checks/suite.json`")
    path = Path(value)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"{where}: {format_key(key)}: suite file {value} does not exist (looked for {path})",
                          hint="a relative suite path is relative to the file that names it")
    try:
        suite = load_yaml(path, env={})  # JSON is YAML: line numbers for both
    except ConfigError as exc:
        raise ConfigError(f"{where}: {format_key(key)}: cannot read suite file {value}: {exc.message}") from None
    data = suite.data
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ConfigError(f"{suite.path}:1: a suite file is a mapping with an `expectations` list (Great Expectations' suite JSON)",
                          hint='e.g. {"name": "web", "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]}')
    out = []
    for i, item in enumerate(data["expectations"]):
        ikey: Key = ("expectations", i)
        if not isinstance(item, dict):
            raise ConfigError(f"{suite.where(ikey)}: {format_key(ikey)}: each expectation of a suite is a mapping with `type` and `kwargs`")
        unknown = sorted(set(item) - {"type", "expectation_type", "kwargs", "meta", "id", "severity", "notes", "description", "rendered_content"})
        if unknown:
            raise ConfigError(f"{suite.where(ikey + (unknown[0],))}: {format_key(ikey + (unknown[0],))}: unknown key; allowed keys: type, kwargs, meta, severity, notes, description")
        name = item.get("type") or item.get("expectation_type")
        if not isinstance(name, str):
            raise ConfigError(f"{suite.where(ikey)}: {format_key(ikey)}: `type` (the expectation's name) is missing")
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{suite.where(ikey + ('kwargs',))}: {format_key(ikey + ('kwargs',))}: kwargs must be a mapping")
        kwargs = dict(kwargs)
        for extra in ("meta", "severity", "notes", "description"):
            if item.get(extra) is not None and extra not in kwargs:
                kwargs[extra] = item[extra]
        out.append(ExpectationSpec(name, kwargs, suite.where(ikey + ("type",)), f"{path.name}: {format_key(ikey)}"))
    return out


def check_spec(spec: ExpectationSpec) -> None:
    """The name is registered and the kwargs make a valid expectation; else :class:`ConfigError`."""
    get_impl, names = registry()
    if spec.type in UNSUPPORTED:
        raise ConfigError(f"{spec.where}: {spec.key}: {spec.type} cannot be evaluated on a dataset's Parquet shards: {UNSUPPORTED[spec.type]}")
    if spec.type not in names:
        close = difflib.get_close_matches(spec.type, names, n=1, cutoff=0.75)
        raise ConfigError(
            f"{spec.where}: {spec.key}: unknown expectation {spec.type!r}",
            hint=f"did you mean {close[0]!r}?" if close else "see https://greatexpectations.io/expectations/ for Great Expectations' names; curate adds curate_language_share, curate_duplicate_rate, curate_row_count_change",
        )
    reserved = [k for k in RESERVED_KWARGS if k in spec.kwargs]
    if reserved:
        raise ConfigError(f"{spec.where}: {spec.key}.{reserved[0]}: set by curate, not in a pipeline file")
    instantiate(spec)


def instantiate(spec: ExpectationSpec) -> Any:
    """The GE expectation object of ``spec`` (its kwargs validated by GE's own model)."""
    get_impl, _ = registry()
    impl = get_impl(spec.type)
    try:
        return impl(**spec.kwargs)
    except Exception as exc:  # pydantic (v1, as GE uses it) or GE's own configuration errors
        raise ConfigError("\n".join(_kwarg_errors(spec, impl, exc))) from None


def _kwarg_errors(spec: ExpectationSpec, impl: Any, exc: Exception) -> list[str]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [f"{spec.where}: {spec.key}: {type(exc).__name__}: {exc}"]
    fields = sorted(k for k in getattr(impl, "__fields__", {}) if k not in (*RESERVED_KWARGS, "id", "rendered_content"))
    lines = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "")
        if err.get("type") == "value_error.extra":
            close = difflib.get_close_matches(loc, fields, n=1, cutoff=0.6)
            msg = f"unknown kwarg; allowed: {', '.join(fields)}" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif err.get("type") == "value_error.missing":
            msg = "required kwarg is missing"
        else:
            got = spec.kwargs.get(loc.split(".")[0], None)
            msg += f" (got {json.dumps(got, default=str)})"
        lines.append(f"{spec.where}: {spec.key}.{loc}: {msg}")
    return lines or [f"{spec.where}: {spec.key}: {exc}"]


#: curate checks' default columns
DEFAULT_COLUMNS = {"curate_language_share": "language", "curate_duplicate_rate": "text"}


def check_columns(specs: list[ExpectationSpec], columns: list[str], where: str = "the output") -> None:
    """Every column an expectation names is one the output will have (the plan check's columns);
    else a :class:`ConfigError` listing every unknown column, before Ray starts."""
    problems = column_problems(specs, columns, where)
    if problems:
        from ..errors import combine_errors

        raise combine_errors(problems)


def column_problems(specs: list[ExpectationSpec], columns: list[str], where: str = "the output") -> list[ConfigError]:
    """A :class:`ConfigError` (with a "did you mean") for each column an expectation names that
    is not in ``columns``."""
    problems = []
    for spec in specs:
        if spec.type == "expect_column_to_exist":
            continue  # its column may be absent: that is what it checks
        named: list[tuple[str, Any]] = [(k, spec.kwargs.get(k)) for k in ("column", "column_A", "column_B") if k in spec.kwargs]
        named += [("column_list", c) for c in spec.kwargs.get("column_list") or []]
        if spec.type in DEFAULT_COLUMNS and "column" not in spec.kwargs:
            named.append(("column", DEFAULT_COLUMNS[spec.type]))
        for key, col in named:
            if isinstance(col, str) and col not in columns:
                close = difflib.get_close_matches(col, columns, n=1, cutoff=0.6)
                problems.append(ConfigError(
                    f"{spec.where}: {spec.key}.{key}: column {col!r} is not in {where}; its columns: {', '.join(columns)}",
                    hint=f"did you mean {close[0]!r}?" if close else "carry the column from the input (input.keep_fields) or name an output column",
                ))
    return problems
