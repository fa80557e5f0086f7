"""`tir index` / `tir search`: the index's freshness, folders of arbitrary images, and search = eval ranking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from search_support import make_manifests, make_run
from tir.cli import cli
from tir.pipeline import store
from tir.search.searcher import Searcher
from tir.training.methods.base import METHODS
from tir.training.metrics import top_indices

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> Path:
    return make_manifests(tmp_path_factory.mktemp("search"))


def invoke(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("method", sorted(METHODS))
def test_search_ranking_equals_eval_ranking(manifests: Path, tmp_path: Path, method: str) -> None:
    run = make_run(manifests, tmp_path / method, method=method)
    invoke("eval", run, "--device", "cpu", "--no-plot")
    invoke("index", run, "--device", "cpu", "--workers", "0")
    reranked = run / "eval-test-reranked.parquet"  # a re-ranking method (cfack): eval's re-ranked order
    per_query = store.read_table(reranked if reranked.exists() else run / "eval-test.parquet", stage="eval").to_pandas()
    searcher = Searcher.open(run, run / "index-manifests-test.parquet", torch.device("cpu"))
    together = searcher.search(per_query["caption"].tolist(), k=10, graphs=False)
    for (_, query), result in zip(per_query.iterrows(), together):
        assert [hit.image_path for hit in result.hits] == list(query["top10_paths"])
        first = next(hit.rank for hit in result.hits if hit.pid == query["pid"])
        assert first == query["first_hit_rank"]
    for _, query in per_query.head(4).iterrows():  # one sentence at a time, as a user searches
        alone = searcher.search([query["caption"]], k=10, graphs=False)[0]
        assert [hit.image_path for hit in alone.hits] == list(query["top10_paths"])
    # with the int8 first pass (as `tir serve` on a large index), for every method that allows it
    compact = Searcher.open(run, run / "index-manifests-test.parquet", torch.device("cpu"), compact_min_rows=0)
    assert (compact.compact is not None) == bool(METHODS[method].similarity_terms and not METHODS[method].reranks)
    for top in (2, 10):
        for (_, query), result in zip(per_query.iterrows(), compact.search(per_query["caption"].tolist(), top, graphs=False)):
            assert [hit.image_path for hit in result.hits] == list(query["top10_paths"])[:top]


def test_search_order_keeps_gallery_order_on_ties() -> None:
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    assert top_indices(scores, 4).tolist() == [[1, 3, 0, 2]]


def test_index_is_fresh_until_the_gallery_or_checkpoint_changes(manifests: Path, tmp_path: Path) -> None:
    run = make_run(manifests, tmp_path / "run")
    first = invoke("index", run, "--device", "cpu", "--workers", "0")
    assert "6 images" in first.output and "0 unreadable" in first.output
    assert "fresh" in invoke("index", run, "--workers", "0").output
    image = manifests.parent / "data" / "imgs" / "test" / "3.png"
    Image.new("RGB", (32, 64), (1, 2, 3)).save(image)
    os.utime(image, ns=(1, 1))
    assert "6 images" in invoke("index", run, "--workers", "0").output  # a changed image: encoded again
    make_run(manifests, run, seed=5)  # a new checkpoint in the same folder
    result = CliRunner().invoke(cli, ["search", str(run), "a man"])
    assert result.exit_code == 2 and "another checkpoint" in result.output and result.output.count("\n") == 1
    assert "6 images" in invoke("index", run, "--workers", "0").output


def test_folder_index_skips_unreadable_files_and_searches(manifests: Path, tmp_path: Path) -> None:
    run = make_run(manifests, tmp_path / "run", method="hkgr")
    folder = tmp_path / "photos"
    (folder / "street" / "day").mkdir(parents=True)
    Image.new("RGB", (40, 90), (200, 10, 10)).save(folder / "a.jpg")
    Image.new("RGB", (30, 70), (10, 200, 10)).save(folder / "street" / "b.PNG")
    Image.new("RGB", (30, 70), (10, 10, 200)).save(folder / "street" / "day" / "c.webp")
    (folder / "street" / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    result = invoke("index", run, "--images", folder, "--workers", "2")
    assert "3 images" in result.output and "1 unreadable" in result.output and "broken.jpg" in result.output
    out = invoke("search", run, "a man in a red shirt", "someone in green", "--top", "2", "--json")
    results = json.loads(out.output)
    assert len(results) == 2 and all(len(r["hits"]) == 2 for r in results)
    assert {h["image_path"] for r in results for h in r["hits"]} <= {"a.jpg", "street/b.PNG", "street/day/c.webp"}
    assert results[0]["hits"][0]["pid"] is None
    heads = {o["head"] for o in results[0]["graph"]["objects"]}
    assert {"man", "shirt"} <= heads and results[0]["graph"]["attributes"][0]["text"] == "red"
    assert results[0]["attended"] and all(w["weight"] > 0 for w in results[0]["attended"])  # hkgr: token selection


def test_search_text_and_html(manifests: Path, tmp_path: Path) -> None:
    run = make_run(manifests, tmp_path / "run", method="clip")
    invoke("index", run, "--workers", "0")
    result = invoke("search", run, "a woman in a red shirt carrying a bag", "--top", "3", "--html", tmp_path / "r.html")
    assert "graph: woman; shirt (red); bag | woman -in-> shirt;" in result.output  # objects, attributes, relations
    assert result.output.count(" pid ") == 3 and "attended" not in result.output  # clip: global features only
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 3 and "http" not in page


@pytest.mark.parametrize("args, message", [
    (["--top", "0"], "--top"),
    (["--index", "missing.parquet"], "index file not found"),
])
def test_search_bad_input_is_one_line(manifests: Path, tmp_path: Path, args: list[str], message: str) -> None:
    run = make_run(manifests, tmp_path / "run", method="clip")
    result = CliRunner().invoke(cli, ["search", str(run), "a man", *args])
    assert result.exit_code == 2 and message in result.output


def test_search_without_index_names_the_command(manifests: Path, tmp_path: Path) -> None:
    run = make_run(manifests, tmp_path / "run", method="clip")
    result = CliRunner().invoke(cli, ["search", str(run), "a man"])
    assert result.exit_code == 2 and f"tir index {run}" in result.output and result.output.count("\n") == 1
