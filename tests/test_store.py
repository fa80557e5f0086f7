"""The artifact store: atomic writes, provenance, freshness and staleness checks."""

from __future__ import annotations

import os

import pyarrow as pa
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
