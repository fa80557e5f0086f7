"""The artifact store: atomic writes, provenance, freshness and staleness checks."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tir.errors import StaleArtifactError, UserError
from tir.pipeline import store


def _table() -> pa.Table:
    return pa.table({"x": pa.array([1, 2, 3], pa.int64())})


def test_write_table_records_provenance(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("[]")
    out = store.write_table(_table(), tmp_path / "a.parquet", stage="prepare", options={"k": 1}, inputs={"raw": source})
    provenance = store.read_provenance(out)
    assert provenance["stage"] == "prepare"
    assert provenance["options"] == {"k": 1}
    assert provenance["inputs"]["raw"]["size"] == 2
    assert len(provenance["inputs"]["raw"]["sha256"]) == 64
    assert store.read_table(out, stage="prepare").num_rows == 3


def test_plain_columns_have_no_dictionary_no_statistics_and_no_compression(tmp_path):
    table = pa.table({"x": pa.array([1, 2, 1], pa.int64()), "text": pa.array(["b a", "a  c", "b a"])})
    out = store.write_table(table, tmp_path / "a.parquet", stage="prepare", options={}, inputs={}, plain_columns=("text",))
    chunks = pq.ParquetFile(out).metadata.row_group(0)
    x, text = chunks.column(0), chunks.column(1)
    assert x.statistics is not None and x.statistics.has_min_max and x.has_dictionary_page
    assert text.statistics is None or not text.statistics.has_min_max
    assert not text.has_dictionary_page
    assert (x.compression, text.compression) == ("ZSTD", "UNCOMPRESSED")
    assert pq.read_table(out).replace_schema_metadata(None).equals(table)


def test_only_the_dictionary_columns_get_a_dictionary(tmp_path):
    table = pa.table({"row": pa.array(range(500), pa.int64()), "split": pa.array(["train", "test"] * 250), "text": pa.array(["a b"] * 500)})
    out = store.write_table(table, tmp_path / "a.parquet", stage="prepare", options={}, inputs={},
                            plain_columns=("text",), dictionary_columns=("split", "text"))
    row, split, text = (pq.ParquetFile(out).metadata.row_group(0).column(k) for k in range(3))
    assert split.has_dictionary_page and not row.has_dictionary_page and not text.has_dictionary_page
    assert row.statistics.has_min_max and (row.compression, text.compression) == ("ZSTD", "UNCOMPRESSED")
    assert pq.read_table(out).replace_schema_metadata(None).equals(table)


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_freshness_follows_options_and_input_content(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("[1]")
    out = tmp_path / "a.parquet"
    kwargs = dict(stage="prepare", options={"k": 1}, inputs={"raw": source})
    assert not store.is_fresh(out, **kwargs)
    store.write_table(_table(), out, **kwargs)
    assert store.is_fresh(out, **kwargs)
    assert not store.is_fresh(out, stage="prepare", options={"k": 2}, inputs={"raw": source})
    # touching without changing content keeps it fresh (content hash), changing content does not
    os.utime(source, ns=(1, 1))
    assert store.is_fresh(out, **kwargs)
    source.write_text("[2]")
    assert not store.is_fresh(out, **kwargs)


def test_require_built_from_names_the_command_to_rerun(tmp_path):
    upstream = tmp_path / "manifest.parquet"
    store.write_table(_table(), upstream, stage="prepare", options={}, inputs={})
    graphs = store.write_table(_table(), tmp_path / "graphs.parquet", stage="parse-graphs", options={}, inputs={"manifest": upstream})
    store.require_built_from(graphs, "manifest", upstream, "tir parse-graphs X")
    store.write_table(pa.table({"x": [9]}), upstream, stage="prepare", options={}, inputs={})
    with pytest.raises(StaleArtifactError, match="tir parse-graphs X --force"):
        store.require_built_from(graphs, "manifest", upstream, "tir parse-graphs X")


def test_read_table_rejects_wrong_stage_and_garbage(tmp_path):
    out = store.write_table(_table(), tmp_path / "a.parquet", stage="prepare", options={}, inputs={})
    with pytest.raises(UserError, match="tir parse-graphs"):
        store.read_table(out, stage="parse-graphs")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        store.read_provenance(junk)


def _big_table() -> pa.Table:
    return pa.table({"x": pa.array(range(50_000), pa.int64()), "s": [f"caption {i}" for i in range(50_000)]})


def test_damaged_data_pages_are_one_line_naming_the_stage(tmp_path):
    out = store.write_table(_big_table(), tmp_path / "a.parquet", stage="prepare", options={}, inputs={})
    column = pq.ParquetFile(out).metadata.row_group(0).column(1)
    first_page = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(out.read_bytes())
    data[first_page:first_page + 64] = b"\xff" * 64  # its page header
    out.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"is damaged .*re-run `tir prepare` --force") as error:
        store.read_table(out, stage="prepare")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("edit", ["drop", "retype"])
def test_edited_schema_is_refused(tmp_path, edit):
    out = store.write_table(_big_table(), tmp_path / "a.parquet", stage="prepare", options={}, inputs={})
    table = pq.read_table(out)  # keeps the tir provenance, as an edit with pyarrow would
    table = table.drop_columns(["s"]) if edit == "drop" else table.set_column(0, "x", table.column("x").cast(pa.int32()))
    pq.write_table(table, out)
    expected = "column s is missing" if edit == "drop" else "column x is int32, not int64"
    with pytest.raises(UserError, match=f"edited after .*{expected}"):
        store.read_table(out, stage="prepare")


def test_damaged_provenance_is_one_line(tmp_path):
    table = _table().replace_schema_metadata({store.METADATA_KEY: b"{not json"})
    pq.write_table(table, tmp_path / "a.parquet")
    with pytest.raises(UserError, match="provenance is damaged"):
        store.read_table(tmp_path / "a.parquet", stage="prepare")


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "not writable"),
                                       (errno.EACCES, "not writable")])
def test_failed_write_is_one_line_naming_the_file(tmp_path, code, fix):
    target = tmp_path / "t.parquet"
    with pytest.raises(UserError, match=fix) as error:
        with store.atomic_path(target) as tmp:
            raise OSError(code, os.strerror(code), str(tmp))  # what the writer raises on that fault
    assert str(target) in str(error.value) and list(tmp_path.iterdir()) == []


def test_output_under_a_file_is_one_line(tmp_path):
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(UserError, match="a file stands where a folder is needed"):
        store.write_json_atomic(tmp_path / "out" / "stats.json", {})


def test_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = store.write_json_atomic(tmp_path / "a.json", {})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = store.write_table(_table(), tmp_path / "b.parquet", stage="prepare", options={}, inputs={})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_fingerprint_hash_is_the_contents_sha256(tmp_path):
    for name, data in (("empty", b""), ("small", b"[1]"), ("blocks", bytes(range(256)) * 9000)):
        path = tmp_path / name
        path.write_bytes(data)
        assert store.fingerprint(path)["sha256"] == hashlib.sha256(data).hexdigest()


def test_read_table_reads_columns_like_pyarrow_and_names_a_missing_one(tmp_path):
    table = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "s": pa.array(["a", "b", "a"]).dictionary_encode()})
    out = store.write_table(table, tmp_path / "a.parquet", stage="prepare", options={}, inputs={})
    read = store.read_table(out, stage="prepare", columns=["s", "x"])
    assert read.equals(pq.read_table(out, columns=["s", "x"]))
    assert read.schema.equals(pq.read_table(out, columns=["s", "x"]).schema, check_metadata=True)
    with pytest.raises(UserError, match="no column 'y'.*re-run `tir prepare` --force"):
        store.read_table(out, stage="prepare", columns=["x", "y"])
