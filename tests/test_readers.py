"""Readers on real files: JSONL (plain, gz, zst), Parquet, text folders; bad input reported with file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq
import pytest
import zstandard
from curate.pipelines.config import InputConfig
from curate.pipelines.errors import ConfigError, InputDataError
from curate.pipelines.readers import plan_inputs, read_task, split_tasks
from curate.pipelines.stage import DROP_REASON, DROP_RULE, DROP_STAGE, POS
from helpers import write_jsonl


def read_all(cfg: InputConfig, split_bytes: int | None = None) -> pa.Table:
    files = plan_inputs(cfg)
    tasks = split_tasks(files, cfg, split_bytes) if split_bytes else split_tasks(files, cfg)
    tables = [t for task in tasks for t in read_task(task, cfg)]
    return pa.concat_tables(tables) if tables else pa.table({})


def docs(n: int, prefix: str = "d") -> list[dict[str, object]]:
    return [{"id": f"{prefix}{i}", "text": f"document number {i} " + "word " * (i % 7), "lang": "en"} for i in range(n)]


def test_jsonl_plain_gz_zst(tmp_path: Path) -> None:
    rows = docs(30)
    write_jsonl(tmp_path / "a.jsonl", rows[:10])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[10:20])
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows[20:]).encode()))
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "*")], keep_fields=["lang"])
    t = read_all(cfg)
    assert sorted(t.column("id").to_pylist()) == sorted(r["id"] for r in rows)
    assert set(t.column("lang").to_pylist()) == {"en"}
    assert t.column(POS).to_pylist() == sorted(set(t.column(POS).to_pylist()))  # unique, in input order
    assert t.column(DROP_STAGE).null_count == 30


def test_byte_range_splits_read_every_line_exactly_once(tmp_path: Path) -> None:
    rows = docs(2000)
    write_jsonl(tmp_path / "big.jsonl", rows)
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "big.jsonl")], read_batch_rows=97)
    whole = read_all(cfg)
    size = (tmp_path / "big.jsonl").stat().st_size
    for split in (1000, 4096, 7777, size // 3):
        files = plan_inputs(cfg)
        tasks = split_tasks(files, cfg, split)
        assert len(tasks) > 1
        parts = pa.concat_tables([t for task in tasks for t in read_task(task, cfg)])
        assert parts.column("id").to_pylist() == whole.column("id").to_pylist(), split
        assert parts.column(POS).to_pylist() == whole.column(POS).to_pylist()


def test_malformed_json_fails_with_file_and_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [*docs(3), '{"id": "x", "text": "broken', *docs(2, "e")])
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "a.jsonl")])
    with pytest.raises(InputDataError) as info:
        read_all(cfg)
    assert str(info.value.message).endswith("a.jsonl:4: malformed JSON: unexpected end of data: line 1 column 28 (char 27)")


def test_malformed_line_number_in_a_later_byte_range(tmp_path: Path) -> None:
    rows: list[dict[str, object] | str] = list(docs(500))
    rows.insert(400, "not json at all")
    write_jsonl(tmp_path / "a.jsonl", rows)
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "a.jsonl")])
    with pytest.raises(InputDataError) as info:
        read_all(cfg, split_bytes=2000)
    assert "a.jsonl:401: malformed JSON" in info.value.message


def test_skip_policy_counts_and_records(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(
        b'{"id": "ok1", "text": "fine"}\n'
        b'{"id": "bad", "text": "caf\xe9"}\n'  # latin-1 byte: invalid UTF-8
        b'[1, 2]\n'
        b'{"id": "nt"}\n'
        b'\n'
        b'{"id": "ok2", "text": "also fine"}\n'
    )
    cfg = InputConfig(format="jsonl", paths=[str(p)], on_error="skip")
    t = read_all(cfg)
    assert t.num_rows == 6  # one row per line: the blank line is counted too
    bad = t.filter(pa.compute.is_valid(t.column(DROP_STAGE)))
    assert bad.column(DROP_RULE).to_pylist() == ["invalid_utf8", "not_an_object", "missing_text", "blank_line"]
    assert bad.column("id").to_pylist()[3].endswith("a.jsonl:5")
    reasons = bad.column(DROP_REASON).to_pylist()
    assert reasons[0].endswith("a.jsonl:2: invalid UTF-8 at byte 26 of the line")
    assert reasons[1].endswith("a.jsonl:3: expected a JSON object, got list")
    assert reasons[2].endswith("a.jsonl:4: missing field 'text'")
    assert bad.column("text").to_pylist()[0] == '{"id": "bad", "text": "caf\ufffd"}'


def test_invalid_utf8_fails_by_default(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "\xff\xfe"}\n')
    with pytest.raises(InputDataError, match=r"a\.jsonl:2: invalid UTF-8"):
        read_all(InputConfig(format="jsonl", paths=[str(p)]))


def test_empty_file_gives_no_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "empty.jsonl")])
    assert plan_inputs(cfg)[0].size == 0
    assert read_all(cfg).num_rows == 0


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"input.paths\[0\]: no input files match"):
        plan_inputs(InputConfig(format="jsonl", paths=[str(tmp_path)]))  # a folder without JSONL files
    write_jsonl(tmp_path / "a.jsonl", docs(1))
    with pytest.raises(ConfigError, match=r"input.paths\[1\]: no input files match '.*nothing-here\*.jsonl'"):
        plan_inputs(InputConfig(format="jsonl", paths=[str(tmp_path), str(tmp_path / "nothing-here*.jsonl")]))


def test_ids_derived_from_content_are_stable(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"text": "same text"}, {"text": "other text"}, {"text": "same text"}])
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "a.jsonl")])
    ids = read_all(cfg).column("id").to_pylist()
    assert ids[0] == ids[2] != ids[1]
    assert ids == read_all(cfg).column("id").to_pylist()
    assert len(ids[0]) == 32


def test_custom_fields_and_integer_ids(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"doc_id": 7, "content": "hello"}])
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "a.jsonl")], text_field="content", id_field="doc_id")
    t = read_all(cfg)
    assert t.column("id").to_pylist() == ["7"] and t.column("text").to_pylist() == ["hello"]


def test_parquet_and_text_folder(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["one", "two"], "score": [0.5, 0.7]}), tmp_path / "a.parquet")
    t = read_all(InputConfig(format="parquet", paths=[str(tmp_path / "*.parquet")], keep_fields=["score"]))
    assert t.column("id").to_pylist() == ["p1", "p2"] and t.column("score").to_pylist() == [0.5, 0.7]

    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha text")
    (folder / "sub" / "b.txt").write_text("beta text")
    (folder / "ignored.bin").write_bytes(b"\x00")
    t = read_all(InputConfig(format="text", paths=[str(folder)]))
    assert sorted(t.column("text").to_pylist()) == ["alpha text", "beta text"]


def test_parquet_without_text_column(tmp_path: Path) -> None:
    """A Parquet input needs no text (media datasets); a text_field named but absent is an error."""
    pq.write_table(pa.table({"body": ["x"], "image": pa.array([b"\x89PNG"], pa.binary())}), tmp_path / "a.parquet")
    rows = read_all(InputConfig(format="parquet", paths=[str(tmp_path / "a.parquet")]))
    assert "text" not in rows.schema.names and rows.column("image").to_pylist() == [b"\x89PNG"]
    assert rows.column("id")[0].as_py().endswith("a.parquet:0"), "without text to hash, the place in the input names a row"
    with pytest.raises(InputDataError, match=r"a\.parquet: no column 'caption' \(columns: body, image\)"):
        read_all(InputConfig(format="parquet", paths=[str(tmp_path / "a.parquet")], text_field="caption"))


def test_truncated_gzip_fails_naming_the_file_or_keeps_every_row_before_the_break(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b'{"id": "%d", "text": "some text %d"}\n' % (i, i) for i in range(20000)))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    import zlib

    readable = zlib.decompressobj(31).decompress(data[: len(data) // 2]).count(b"\n")
    with pytest.raises(InputDataError, match=r"t\.jsonl\.gz: the file is truncated or corrupt"):
        read_all(InputConfig(format="jsonl", paths=[str(tmp_path / "t.jsonl.gz")]))
    rows = read_all(InputConfig(format="jsonl", paths=[str(tmp_path / "t.jsonl.gz")], on_error="skip"))
    live = rows.filter(pa.compute.is_null(rows.column("_drop_stage")))
    assert live.column("id").to_pylist() == [str(i) for i in range(readable)]
    bad = rows.filter(pa.compute.is_valid(rows.column("_drop_stage"))).to_pylist()
    assert [r["_drop_rule"] for r in bad] == ["truncated_file"]


def test_fsspec_urls_with_globs(tmp_path: Path) -> None:
    """URLs go through fsspec (s3://, gs://, ... the same way); file:// is the one that runs offline."""
    write_jsonl(tmp_path / "a.jsonl", docs(3))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in docs(2, "e"))
    cfg = InputConfig(format="jsonl", paths=[f"file://{tmp_path}/*.jsonl*"])
    files = plan_inputs(cfg)
    assert [f.path.rsplit("/", 1)[-1] for f in files] == ["a.jsonl", "b.jsonl.gz"]
    assert all(f.path.startswith("file://") and f.size > 0 for f in files)
    assert sorted(read_all(cfg).column("id").to_pylist()) == ["d0", "d1", "d2", "e0", "e1"]


def test_arrow_fast_path_equals_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of clean lines go through Arrow's JSON reader; the result is what line-by-line parsing gives."""
    import curate.pipelines.readers.jsonl as readers

    rows: list[dict[str, object] | str] = [
        {"id": i if i % 3 else f"s{i}", "text": f"text {i} é \u2028 \\ \"q\"", "n": i} for i in range(3000)
    ]
    write_jsonl(tmp_path / "a.jsonl", rows)
    cfg = InputConfig(format="jsonl", paths=[str(tmp_path / "a.jsonl")], keep_fields=["n"], read_batch_rows=500)
    fast = read_all(cfg, split_bytes=30_000)
    calls = []
    monkeypatch.setattr(readers, "_parse_block_fast", lambda *a: calls.append(1))
    slow = read_all(cfg, split_bytes=30_000)
    assert calls  # the slow path really ran
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.num_rows == 3000
