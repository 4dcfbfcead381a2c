"""The gate's report: the validation result as GE's JSON and as Data Docs HTML, saved beside the
run's log file, and the lines printed for each expectation that failed.

The HTML is Great Expectations' Data Docs page for one validation result, rendered directly (no
Data Docs site, no ``gx/`` folder). It loads Bootstrap and its fonts from CDNs: offline it shows
every result, unstyled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .. import fs
from .result import failures, observed


def save(result: Any, folder: str | Path, stem: str) -> list[str]:
    """``<folder>/<stem>.expectations.json`` and ``.html``; returns their paths."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    base = Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    json_path = base / f"{stem}.expectations.json"
    html_path = base / f"{stem}.expectations.html"
    fs.write_bytes(str(json_path), json.dumps(result.to_json_dict(), indent=2, default=str).encode())
    # GE's renderer logs a traceback for a result it cannot draw in full (a distinct-values result
    # without unexpected_percent, as GE itself returns it): the page is still written, and the
    # JSON has every value, so that noise stays out of the user's terminal
    render_log = logging.getLogger("great_expectations.render")
    level = render_log.level
    render_log.setLevel(logging.CRITICAL)
    try:
        html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    except Exception as exc:  # a renderer bug must not hide the verdict: the JSON has it all
        html = f"<html><body><p>Data Docs could not be rendered ({type(exc).__name__}: {exc}); see {json_path.name}</p></body></html>"
    finally:
        render_log.setLevel(level)
    fs.write_bytes(str(html_path), html.encode())
    return [str(json_path), str(html_path)]


def failure_lines(result: Any) -> list[str]:
    """One line per expectation that failed: severity, where it was declared, what was expected
    and what was observed."""
    lines = []
    for severity, r in failures(result):
        cfg = r.expectation_config
        meta = (r.meta or {}).get("curate", {})
        kwargs = ", ".join(f"{k}={v!r}" for k, v in dict(cfg.kwargs).items() if k not in ("batch_id", "meta", "notes", "description"))
        how = f" [sample of {meta.get('sample_rows')} rows]" if meta.get("method") == "sample" else ""
        where = f"{meta['declared_at']}: " if meta.get("declared_at") else ""
        lines.append(f"{where}{cfg.type}({kwargs}) failed{' (' + severity + ')' if severity != 'critical' else ''}: {observed(r)}{how}")
    return lines


def headline(result: Any) -> str:
    s = result.statistics
    return f"{s['successful_expectations']} of {s['evaluated_expectations']} expectations passed on {(result.meta or {}).get('curate', {}).get('rows', 0):,} rows"
