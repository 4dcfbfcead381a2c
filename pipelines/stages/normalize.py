"""``normalize``: Unicode normalisation, control characters, whitespace (vectorised with Arrow)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

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
        original = batch.column("text")
        text = original
        if p.form != "none":
            text = pc.utf8_normalize(text, p.form)
        text = pc.replace_substring_regex(text, r"\r\n?", "\n")
        if p.collapse_whitespace:
            text = pc.replace_substring_regex(text, r"[\t\x0B\x0C\p{Zs}]+", " ")
        if p.remove_control:
            text = pc.replace_substring_regex(text, r"[\x00-\x08\x0B-\x1F\x7F-\x9F]", "")
        if p.collapse_whitespace:
            text = pc.replace_substring_regex(text, r" +\n", "\n")
        text = pc.replace_substring_regex(text, "\n{%d,}" % (p.max_newlines + 1), "\n" * p.max_newlines)
        if p.strip:
            text = pc.utf8_trim_whitespace(text)
        changed = pc.sum(pc.not_equal(original, text)).as_py() or 0
        out = batch.set_column(batch.schema.get_field_index("text"), "text", text)
        return StageOutput(out, counters={"changed": int(changed)})
