"""evaluate(): chunked ranking equals the whole-matrix metrics; mode restored; per-query table; plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tir.training.evaluation import eval_data, evaluate, split_tables
from tir.training.methods.base import Method
from tir.training.metrics import retrieval_metrics
from tir.training.retrieval_plot import pick_queries, plot_retrievals, worst_queries

torch.set_num_threads(1)
DIM = 6


class Lookup(Method):
    """Images carry their feature in pixel values; a caption token selects a row of a fixed table."""

    name = "lookup-test"

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, batch, context):  # pragma: no cover - not used by evaluation
        raise NotImplementedError

    def encode_image(self, images):
        return {"global": images[:, 0, 0, :DIM]}

    def encode_text(self, text):
        return {"global": self.table[text[:, 0]]}

    def similarity(self, text_features, image_features):
        return text_features["global"] @ image_features["global"].T


def manifest(n_ids: int = 5, images_per_id: int = 3, captions_per_image: int = 2) -> pd.DataFrame:
    rows = []
    for image in range(n_ids * images_per_id):
        for c in range(captions_per_image):
            rows.append(dict(split="test", pid=image // images_per_id, image_index=image,
                             image_path=f"p{image}.png", caption=f"{image * captions_per_image + c}"))
    frame = pd.DataFrame(rows)
    frame.insert(0, "pair_index", range(len(frame)))
    train = frame.head(2).assign(split="train")
    return pd.concat([train, frame], ignore_index=True)


def build(seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = manifest()
    gallery, queries = split_tables(frame, "test")
    image_features = torch.from_numpy(rng.normal(size=(len(gallery), DIM))).float()
    table = torch.from_numpy(rng.normal(size=(len(queries), DIM))).float()

    def load_image(path: str) -> torch.Tensor:
        image = torch.zeros(3, 2, DIM)
        image[0, 0] = image_features[int(path[1:-4])]
        return image

    def tokenize(captions):
        return torch.tensor([[int(c), 0] for c in captions])

    data = eval_data(frame, "test", load_image, tokenize, batch_size=4)
    expected = retrieval_metrics(table @ image_features.T, queries["pid"].to_numpy(), gallery["pid"].to_numpy())
    return data, Lookup(table), expected


def test_split_tables_orders_gallery_and_queries() -> None:
    gallery, queries = split_tables(manifest().sample(frac=1, random_state=0), "test")
    assert gallery["image_index"].tolist() == list(range(15))
    assert queries["pair_index"].tolist() == sorted(queries["pair_index"])
    with pytest.raises(ValueError, match="no rows"):
        split_tables(manifest(), "val")


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_evaluate_matches_whole_matrix(chunk_size) -> None:
    data, method, expected = build()
    method.train()
    result = evaluate(method, data, "cpu", chunk_size=chunk_size, quiet=True)
    assert result.metrics == pytest.approx(expected)
    assert method.training  # mode restored
    table = result.per_query
    assert list(table.columns) == ["pair_index", "pid", "first_hit_rank", "ap", "inp", "n_hits", "top10", "caption",
                                   "image_path", "first_hit_image", "first_hit_path", "top10_paths"]
    assert len(table) == 30 and (table["n_hits"] == 3).all()
    assert 100 * table["ap"].mean() == pytest.approx(expected["mAP"])
    assert all(len(top) == 10 for top in table["top10"])


def test_plot_writes_png(tmp_path: Path) -> None:
    data, method, _ = build()
    Image.new("RGB", (12, 30), "blue").save(tmp_path / "p0.png")  # the others are missing: grey tiles
    result = evaluate(method, data, "cpu", quiet=True)
    out = plot_retrievals(result.per_query, data.queries, data.gallery, tmp_path, tmp_path / "plot.png", n_queries=3)
    assert out.stat().st_size > 1000
    assert Image.open(out).format == "PNG"
    worst = plot_retrievals(result.per_query, data.queries, data.gallery, tmp_path, tmp_path / "worst.png", worst=4)
    with Image.open(worst) as image, Image.open(out) as seeded:
        assert image.size[1] > seeded.size[1]  # four rows instead of three


def test_failure_analysis_columns_agree_with_the_ranking() -> None:
    data, method, _ = build()
    table = evaluate(method, data, "cpu", quiet=True).per_query
    gallery = data.gallery.set_index("image_index")
    queries = data.queries.set_index("pair_index")
    for _, row in table.iterrows():
        assert row["caption"] == queries.loc[row["pair_index"], "caption"]
        assert row["image_path"] == gallery.loc[queries.loc[row["pair_index"], "image_index"], "image_path"]
        assert list(row["top10_paths"]) == [gallery.loc[i, "image_path"] for i in row["top10"]]
        ranked_pids = [gallery.loc[i, "pid"] for i in row["top10"]]
        first = ranked_pids.index(row["pid"]) + 1 if row["pid"] in ranked_pids else None
        if first is not None:  # the first hit in the top 10 is the recorded one
            assert row["first_hit_rank"] == first and row["first_hit_image"] == row["top10"][first - 1]
        assert gallery.loc[row["first_hit_image"], "pid"] == row["pid"]
        assert row["first_hit_path"] == gallery.loc[row["first_hit_image"], "image_path"]


def test_plot_query_choice_ignores_results_and_worst_are_worst() -> None:
    data, method, _ = build()
    table = evaluate(method, data, "cpu", quiet=True).per_query
    other = table.assign(first_hit_rank=table["first_hit_rank"].to_numpy()[::-1])  # another run's results
    assert pick_queries(table, 6)["pair_index"].tolist() == pick_queries(other, 6)["pair_index"].tolist()
    assert pick_queries(table, 6, seed=1)["pair_index"].tolist() != pick_queries(table, 6)["pair_index"].tolist()
    table.loc[3, "first_hit_rank"] = 0  # a query without any hit counts as the worst
    worst = worst_queries(table, 4)["first_hit_rank"].tolist()
    assert worst[0] == 0 and worst[1:] == sorted(table["first_hit_rank"].drop(3), reverse=True)[:3]
