"""``normalize``: Unicode normalisation, control characters, whitespace.

One native (Rust) pass per document, in parallel with the GIL released; the semantics are those of
the pyarrow chain ``curate.pipelines._textops.normalize_reference``, byte for byte.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field

from .._textops import normalize_text
from ..stage import Params, Stage, StageOutput


class NormalizeParams(Params):
    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = Field("NFC", description="Unicode normalisation form")
    remove_control: bool = Field(True, description="remove control characters (Unicode Cc) except newline and tab")
    collapse_whitespace: bool = Field(
        True, description="each run of spaces/tabs/Unicode spaces becomes one space; spaces at line ends go"
    )
    max_newlines: int = Field(2, ge=1, description="runs of more newlines than this are shortened to it")
    strip: bool = Field(True, description="strip whitespace at the start and end of the document")


class Normalize(Stage[NormalizeParams]):
    """Normalise text: NFC, no control characters, tidy whitespace. Never drops rows."""

    name = "normalize"
    Params = NormalizeParams
    batch_size = 8192

    def process(self, batch: pa.Table) -> StageOutput:
        p = self.params
        text, changed = normalize_text(
            batch.column("text"),
            p.form,
            remove_control=p.remove_control,
            collapse_whitespace=p.collapse_whitespace,
            max_newlines=p.max_newlines,
            strip=p.strip,
        )
        out = batch.set_column(batch.schema.get_field_index("text"), "text", text)
        return StageOutput(out, counters={"changed": int(changed)})
