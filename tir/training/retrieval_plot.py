"""A picture of retrieval results: per query, its caption, the top-k gallery images and, for a miss, the
correct image with its rank.

Hits (same person id) are framed green, misses red. Queries are either a seeded choice that depends only
on the split's queries (the same rows for every run of a dataset, so two runs' pictures compare side by
side) or the ``worst`` N by first-hit rank.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from tir.pipeline.store import atomic_path


def pick_queries(per_query: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` queries drawn with a fixed seed from the pair indices alone (never from the results)."""
    pairs = np.sort(per_query["pair_index"].to_numpy())
    chosen = np.sort(np.random.default_rng(seed).permutation(pairs)[:n])
    return per_query.set_index("pair_index", drop=False).loc[chosen].reset_index(drop=True)


def worst_queries(per_query: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` queries whose first hit is ranked lowest (no hit at all first; ties by pair index)."""
    rank = per_query["first_hit_rank"].to_numpy()
    key = np.where(rank == 0, np.iinfo(np.int64).max, rank)
    order = np.lexsort((per_query["pair_index"].to_numpy(), -key))
    return per_query.iloc[order[:n]].reset_index(drop=True)


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:
        return np.full((128, 48, 3), 200, dtype=np.uint8)  # missing/unreadable image: plain grey tile


def _frame(axis, image: np.ndarray, title: str, hit: bool) -> None:
    colour = "tab:green" if hit else "tab:red"
    axis.imshow(image)
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    axis.set_title(title, fontsize=7, color=colour)


def plot_retrievals(
    per_query: pd.DataFrame,
    queries: pd.DataFrame,
    gallery: pd.DataFrame,
    image_root: str | os.PathLike,
    out_path: str | os.PathLike,
    n_queries: int = 6,
    top_k: int = 5,
    seed: int = 0,
    worst: int | None = None,
) -> Path:
    """Save a PNG grid: one row per query (caption left, top-k images, then the correct image of a miss).

    ``per_query`` is ``EvalResult.per_query``; ``queries`` needs pair_index and caption; ``gallery`` needs
    image_index, image_path and pid. ``worst`` draws that many worst-ranked queries instead of the seeded
    choice of ``n_queries``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = worst_queries(per_query, worst) if worst else pick_queries(per_query, n_queries, seed)
    captions = queries.set_index("pair_index")["caption"]
    by_image = gallery.set_index("image_index")
    figure, axes = plt.subplots(
        len(picked), top_k + 2, figsize=(2.2 + 1.3 * (top_k + 1), 2.6 * len(picked)), squeeze=False,
        gridspec_kw={"width_ratios": [2.2] + [1.0] * (top_k + 1)},
    )
    for row, (_, query) in zip(axes, picked.iterrows()):
        text = "\n".join(textwrap.wrap(str(captions[query["pair_index"]]), 34)[:9])
        rank = int(query["first_hit_rank"])
        row[0].text(0, 1, f"query {query['pair_index']} (pid {query['pid']})\nfirst hit: "
                    f"{rank if rank else 'none'}\n\n{text}", va="top", ha="left", fontsize=7, wrap=True)
        for axis in (row[0], row[-1]):
            axis.axis("off")
        for k, axis in enumerate(row[1:-1]):
            if k >= len(query["top10"]):
                axis.axis("off")
                continue
            image = by_image.loc[int(query["top10"][k])]
            hit = int(image["pid"]) == int(query["pid"])
            _frame(axis, _load(Path(image_root) / image["image_path"]), f"{k + 1}: pid {image['pid']}", hit)
        if rank > top_k:
            correct = by_image.loc[int(query["first_hit_image"])]
            row[-1].axis("on")
            _frame(row[-1], _load(Path(image_root) / correct["image_path"]), f"correct: rank {rank}", True)
        elif rank == 0:
            row[-1].text(0.5, 0.5, "no image of\nthis person", ha="center", va="center", fontsize=7)
    figure.tight_layout()
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return Path(out_path)
