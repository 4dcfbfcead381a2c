"""The gate's report: the validation result as Great Expectations' JSON and as one HTML page,
saved beside the run's log file, and the lines printed for each expectation that failed.

The HTML page is curate's own and self-contained (no script, no stylesheet or font from a
network): each expectation with its status in words and colour, what was observed, how it was
evaluated (exact, or on a sample of N rows) and example values and row ids of a failure; it names
the dataset, the version (or the run about to publish) and when. Long texts are cut, in the page
and in the JSON, so a failure on whole documents stays readable and small.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from .. import fs
from .result import failures, observed, severity_of

#: the most characters of one string kept in the saved JSON and shown in the page
MAX_TEXT = 300


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"... [{len(value):,} characters]"
    if isinstance(value, list):
        return [_cut(v) for v in value]
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    return value


def save(result: Any, folder: str | Path, stem: str, subject: str = "") -> list[str]:
    """``<folder>/<stem>.expectations.json`` and ``.html``; returns their paths. ``subject``
    names what was checked (a dataset and version, or the run about to publish)."""
    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    json_path = base / f"{stem}.expectations.json"
    html_path = base / f"{stem}.expectations.html"
    data = _cut(result.to_json_dict())
    data.setdefault("meta", {})["curate_subject"] = subject
    fs.write_bytes(str(json_path), json.dumps(data, indent=2, default=str).encode())
    fs.write_bytes(str(html_path), render_html(result, subject).encode())
    return [str(json_path), str(html_path)]


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
.pass{color:#0a6b2b}.fail{color:#b00020}.warn{color:#8a5a00}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.status{font-weight:bold;white-space:nowrap}code{font-size:.9em;word-break:break-word}.muted{color:#666}"""


def render_html(result: Any, subject: str = "") -> str:
    """One self-contained page of the validation result (see the module docstring)."""
    st = result.statistics
    rows = (result.meta or {}).get("curate", {}).get("rows", 0)
    verdict = ("<span class=pass>PASSED</span>" if result.success else "<span class=fail>FAILED</span>")
    out = [f"<!doctype html><html><head><meta charset=utf-8><title>curate expectations: {html.escape(subject)}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Expectations {verdict}: {html.escape(subject or 'validation result')}</h1>",
           f"<p>{st['successful_expectations']} of {st['evaluated_expectations']} expectations passed on {rows:,} rows; "
           f"checked {html.escape(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))} "
           f"<span class=muted>(Great Expectations {html.escape(str((result.meta or {}).get('great_expectations_version', '')))})</span></p>",
           "<table><tr><th>status</th><th>expectation</th><th>observed</th><th>evaluated</th><th>example rows (id)</th></tr>"]
    for r in result.results:
        cfg = r.expectation_config
        meta = (r.meta or {}).get("curate", {})
        severity = severity_of(r)
        if r.success:
            status = "<td class='status pass'>✓ passed</td>"
        else:
            status = f"<td class='status {'fail' if severity == 'critical' else 'warn'}'>✗ failed ({html.escape(severity)})</td>"
        kwargs = ", ".join(f"{k}={_cut(v)!r}" for k, v in dict(cfg.kwargs).items() if k not in ("batch_id", "meta", "notes", "description"))
        how = (f"on a sample of {meta.get('sample_rows'):,} rows" if meta.get("method") == "sample" else
               f"approximate (sketch of every row), rank error {meta.get('rank_error', 0):.2%}" if meta.get("method") == "approximate"
               else "exact, every row")
        ids = (r.result or {}).get("partial_unexpected_ids") or []
        where = f"<br><span class=muted>{html.escape(str(meta['declared_at']))}</span>" if meta.get("declared_at") else ""
        out.append(f"<tr>{status}<td><code>{html.escape(cfg.type)}({html.escape(kwargs)})</code>{where}</td>"
                   f"<td>{html.escape(str(_cut(observed(r))))}</td><td>{html.escape(how)}</td>"
                   f"<td><code>{html.escape(', '.join(str(_cut(i)) for i in ids[:20]))}</code></td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def failure_lines(result: Any) -> list[str]:
    """One line per expectation that failed: severity, where it was declared, what was expected
    and what was observed."""
    lines = []
    for severity, r in failures(result):
        cfg = r.expectation_config
        meta = (r.meta or {}).get("curate", {})
        kwargs = ", ".join(f"{k}={v!r}" for k, v in dict(cfg.kwargs).items() if k not in ("batch_id", "meta", "notes", "description"))
        how = (f" [sample of {meta.get('sample_rows')} rows]" if meta.get("method") == "sample" else
               f" [approximate: rank error {meta.get('rank_error', 0):.2%}]" if meta.get("method") == "approximate" else "")
        where = f"{meta['declared_at']}: " if meta.get("declared_at") else ""
        lines.append(f"{where}{cfg.type}({kwargs}) failed{' (' + severity + ')' if severity != 'critical' else ''}: {observed(r)}{how}")
    return lines


def headline(result: Any) -> str:
    s = result.statistics
    return f"{s['successful_expectations']} of {s['evaluated_expectations']} expectations passed on {(result.meta or {}).get('curate', {}).get('rows', 0):,} rows"
