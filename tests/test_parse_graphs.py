"""The parse-graphs stage: contract, freshness, resume, shards and merge, stale manifests, CLI, summary."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tir.cli import cli
from tir.errors import StaleArtifactError, UserError
from tir.knowledge.graph_summary import summarise_graphs
from tir.knowledge.parse_graphs import merge_shards, parse_graphs, parse_shard, shard_path, shard_rows
from tir.pipeline import store
from tir.pipeline.info import describe

CAPTIONS = [
    "A woman in a white shirt, blue jeans and white sneakers, carrying a black bag.",
    "The man has short hair and wears a dark grey jacket. He is holding a phone in his right hand.",
    "",
    "这是一个穿红衣服的女人",
    "word " * 1200,
    "a guy in a red t shirt riding a bike",
]


def write_manifest(root, captions=CAPTIONS, dataset="CUHK-PEDES"):
    n = len(captions)
    splits = ["train"] * (n - n // 3) + ["test"] * (n // 3)
    table = pa.table(
        {
            "pair_index": pa.array([i if s == "train" else i - (n - n // 3) for i, s in enumerate(splits)], pa.int64()),
            "split": pa.array(splits).dictionary_encode(),
            "caption": pa.array(captions, pa.string()),
        }
    )
    folder = root / dataset
    store.write_table(table, folder / "manifest.parquet", stage="prepare", options={}, inputs={})
    return folder


def test_graphs_parquet_follows_the_contract(tmp_path):
    folder = write_manifest(tmp_path)
    result = parse_graphs(folder)
    table = store.read_table(result.path, stage="parse-graphs")
    assert table.num_rows == len(CAPTIONS)
    assert table.column("pair_index").to_pylist() == [0, 1, 2, 3, 0, 1]
    assert [str(s) for s in table.column("split").to_pylist()] == ["train"] * 4 + ["test"] * 2
    objects = table.schema.field("objects").type.value_type
    assert [f.name for f in objects] == ["id", "text", "head", "start", "end"]
    row = table.slice(0, 1).to_pylist()[0]
    caption = row["caption"]
    for obj in row["objects"]:
        assert caption[obj["start"] : obj["end"]] == obj["text"]
    assert row["parser"].startswith("spacy")
    provenance = store.read_provenance(result.path)
    assert provenance["options"]["backend"] == "spacy" and "manifest" in provenance["inputs"]
    assert table.column("truncated").to_pylist()[4] is True


def test_rerun_is_fresh_and_force_rebuilds(tmp_path):
    folder = write_manifest(tmp_path)
    parse_graphs(folder)
    assert parse_graphs(folder).fresh
    assert not parse_graphs(folder, force=True).fresh


def test_changed_manifest_reparses_and_stale_graphs_are_refused_downstream(tmp_path):
    folder = write_manifest(tmp_path)
    out = parse_graphs(folder).path
    write_manifest(tmp_path, CAPTIONS + ["A man in a hat."])
    with pytest.raises(StaleArtifactError, match="parse-graphs"):
        store.require_built_from(out, "manifest", folder / "manifest.parquet", "tir parse-graphs CUHK-PEDES")
    assert parse_graphs(folder).rows == len(CAPTIONS) + 1


def test_interrupted_run_resumes_from_finished_chunks(tmp_path):
    folder = write_manifest(tmp_path, CAPTIONS * 3)
    partial = parse_graphs(folder, chunk_size=4, max_chunks=2)
    assert partial.rows == 0 and not (folder / "graphs.parquet").exists()
    parts = list(folder.glob(".graphs.parquet.parts-*/chunk-*.parquet"))
    assert len(parts) == 2
    done = parse_graphs(folder, chunk_size=4)
    assert done.resumed_chunks == 2 and done.rows == 18
    assert not list(folder.glob(".graphs.parquet.parts-*"))
    whole = parse_graphs(write_manifest(tmp_path / "again", CAPTIONS * 3), chunk_size=4)
    assert pq.read_table(done.path).drop(["parser"]).equals(pq.read_table(whole.path).drop(["parser"]))


def test_a_resume_with_another_chunk_size_parses_again(tmp_path):
    """Chunks are named by their first row: those of another chunk size must not be taken for this run's."""
    folder = write_manifest(tmp_path, CAPTIONS * 3)
    parse_graphs(folder, chunk_size=4, max_chunks=2)
    done = parse_graphs(folder, chunk_size=3, jobs=2)
    assert done.resumed_chunks == 0 and done.rows == 18
    whole = parse_graphs(write_manifest(tmp_path / "again", CAPTIONS * 3))
    assert pq.read_table(done.path).equals(pq.read_table(whole.path))


def test_a_chunk_deleted_during_a_resume_is_an_error_not_zero_graphs(tmp_path, monkeypatch):
    from tir.knowledge import parse_graphs as module

    folder = write_manifest(tmp_path, CAPTIONS * 3)
    parse_graphs(folder, chunk_size=4, max_chunks=2)
    run_chunks = module._run_chunks

    def run_then_lose_a_chunk(*args, **kwargs):
        run_chunks(*args, **kwargs)
        sorted(folder.glob(".graphs.parquet.parts-*/chunk-*.parquet"))[0].unlink()  # another process deletes it

    monkeypatch.setattr(module, "_run_chunks", run_then_lose_a_chunk)
    with pytest.raises(UserError, match="vanished during the run .*chunk-000000.parquet.*parses the missing chunks"):
        parse_graphs(folder, chunk_size=4)
    monkeypatch.setattr(module, "_run_chunks", run_chunks)
    assert parse_graphs(folder, chunk_size=4).rows == 18


def test_a_damaged_chunk_is_one_line_saying_to_delete_it(tmp_path):
    folder = write_manifest(tmp_path, CAPTIONS * 3)
    parse_graphs(folder, chunk_size=4, max_chunks=2)
    sorted(folder.glob(".graphs.parquet.parts-*/chunk-*.parquet"))[1].write_bytes(b"PAR1 damaged")
    with pytest.raises(UserError, match="parsed chunk is damaged .*delete it"):
        parse_graphs(folder, chunk_size=4)


def test_parallel_jobs_give_the_same_graphs(tmp_path):
    folder = write_manifest(tmp_path, CAPTIONS * 2)
    serial = pq.read_table(parse_graphs(folder).path)
    parallel = pq.read_table(parse_graphs(folder, jobs=2, chunk_size=3, force=True).path)
    assert serial.equals(parallel)


def test_repeated_captions_are_parsed_once_with_the_same_graphs(tmp_path, monkeypatch):
    from tir.knowledge.graphs.spacy_backend import SpacyBackend

    parsed: list[int] = []
    original = SpacyBackend.parse_batch
    monkeypatch.setattr(SpacyBackend, "parse_batch", lambda self, captions: parsed.append(len(captions)) or original(self, captions))
    folder = write_manifest(tmp_path, CAPTIONS * 2)
    together = pq.read_table(parse_graphs(folder).path)
    assert parsed == [len(CAPTIONS)]
    one_by_one = pq.read_table(parse_graphs(folder, chunk_size=1, force=True).path)
    assert together.equals(one_by_one)


def test_shards_and_merge(tmp_path):
    folder = write_manifest(tmp_path, CAPTIONS * 2)
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(UserError):
        parse_shard("4/3")
    assert [shard_rows(12, k, 3) for k in (1, 2, 3)] == [(0, 4), (4, 8), (8, 12)]
    parse_graphs(folder, shard=(1, 3))
    parse_graphs(folder, shard=(3, 3))
    with pytest.raises(UserError, match=r"\[2\]"):
        merge_shards(folder)
    parse_graphs(folder, shard=(2, 3))
    assert shard_path(folder, 2, 3).exists()
    merged = merge_shards(folder)
    assert merged.rows == 12
    assert pq.read_table(merged.path).equals(pq.read_table(parse_graphs(folder, force=True).path))


def test_merge_refuses_shards_of_another_manifest(tmp_path):
    folder = write_manifest(tmp_path)
    parse_graphs(folder, shard=(1, 2))
    parse_graphs(folder, shard=(2, 2))
    write_manifest(tmp_path, CAPTIONS[:3])
    with pytest.raises(StaleArtifactError):
        merge_shards(folder)


def test_missing_manifest_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["parse-graphs", "CUHK-PEDES", "--manifests", str(tmp_path)])
    assert result.exit_code == 2 and "tir prepare" in result.output and "Traceback" not in result.output


def test_cli_parses_reports_and_info_summarises(tmp_path):
    write_manifest(tmp_path, dataset="RSTPReid")
    args = ["parse-graphs", "rstpreid", "--manifests", str(tmp_path), "--batch-size", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "(of which empty captions 1)" in result.output
    assert "truncated (parsed in part): 1" in result.output
    assert "up to date" in CliRunner().invoke(cli, args).output
    text = describe(tmp_path / "RSTPReid" / "graphs.parquet")
    assert "top objects:" in text and "top predicates:" in text


def test_cli_shard_and_merge(tmp_path):
    write_manifest(tmp_path)
    base = ["parse-graphs", "CUHK-PEDES", "--manifests", str(tmp_path)]
    for k in ("1/2", "2/2"):
        assert CliRunner().invoke(cli, [*base, "--shard", k]).exit_code == 0
    result = CliRunner().invoke(cli, [*base, "--merge"])
    assert result.exit_code == 0, result.output
    assert "6 graphs" in result.output


def test_summary_of_an_empty_table():
    from tir.knowledge.graphs.schema import graphs_table

    assert summarise_graphs(graphs_table([], [], [], [], "spacy"), {}) == ["  parser: ?", "  no graphs"]


def test_unknown_backend_and_missing_stanza_models(tmp_path, monkeypatch):
    folder = write_manifest(tmp_path)
    with pytest.raises(UserError, match="unknown graph backend"):
        parse_graphs(folder, backend="nope")
    monkeypatch.delenv("STANZA_RESOURCES_DIR", raising=False)
    with pytest.raises(UserError, match="--stanza-dir"):
        parse_graphs(folder, backend="stanza")
    with pytest.raises(UserError, match="en/"):
        parse_graphs(folder, backend="stanza", backend_options={"stanza_dir": str(tmp_path)})
    assert os.environ.get("STANZA_RESOURCES_DIR") is None


def test_the_collector_thresholds_are_restored_after_a_serial_run(tmp_path):
    import gc

    before = gc.get_threshold()
    parse_graphs(write_manifest(tmp_path, CAPTIONS), chunk_size=2)
    assert gc.get_threshold() == before
