"""A picture of retrieval results: per query, its caption and the top-k gallery images.

Hits (same person id) are framed green, misses red; the rank of the first hit is in the row title.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from tir.pipeline.store import atomic_path


def pick_queries(per_query: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` queries drawn with a fixed seed, half of them failures at rank 1 when there are any."""
    rng = np.random.default_rng(seed)
    failed = per_query.index[per_query["first_hit_rank"] != 1].to_numpy()
    passed = per_query.index[per_query["first_hit_rank"] == 1].to_numpy()
    n_failed = min(len(failed), n // 2 if len(passed) else n)
    chosen = np.concatenate([rng.permutation(failed)[:n_failed], rng.permutation(passed)[: n - n_failed]])
    return per_query.loc[np.sort(chosen)]


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:
        return np.full((128, 48, 3), 200, dtype=np.uint8)  # missing/unreadable image: plain grey tile


def plot_retrievals(
    per_query: pd.DataFrame,
    queries: pd.DataFrame,
    gallery: pd.DataFrame,
    image_root: str | os.PathLike,
    out_path: str | os.PathLike,
    n_queries: int = 6,
    top_k: int = 5,
    seed: int = 0,
) -> Path:
    """Save a PNG grid: one row per picked query (caption left, top-k images right).

    ``per_query`` is ``EvalResult.per_query``; ``queries`` needs pair_index and caption;
    ``gallery`` needs image_index, image_path and pid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = pick_queries(per_query, n_queries, seed)
    captions = queries.set_index("pair_index")["caption"]
    by_image = gallery.set_index("image_index")
    figure, axes = plt.subplots(
        len(picked), top_k + 1, figsize=(2.2 + 1.3 * top_k, 2.6 * len(picked)), squeeze=False,
        gridspec_kw={"width_ratios": [2.2] + [1.0] * top_k},
    )
    for row, (_, query) in zip(axes, picked.iterrows()):
        text = "\n".join(textwrap.wrap(str(captions[query["pair_index"]]), 34)[:9])
        rank = int(query["first_hit_rank"])
        row[0].text(0, 1, f"query {query['pair_index']} (pid {query['pid']})\nfirst hit: "
                    f"{rank if rank else 'none'}\n\n{text}", va="top", ha="left", fontsize=7, wrap=True)
        row[0].axis("off")
        for k, axis in enumerate(row[1:]):
            axis.set_xticks([])
            axis.set_yticks([])
            if k >= len(query["top10"]):
                axis.axis("off")
                continue
            image = by_image.loc[int(query["top10"][k])]
            hit = int(image["pid"]) == int(query["pid"])
            axis.imshow(_load(Path(image_root) / image["image_path"]))
            for spine in axis.spines.values():
                spine.set_edgecolor("tab:green" if hit else "tab:red")
                spine.set_linewidth(4)
            axis.set_title(f"{k + 1}: pid {image['pid']}", fontsize=7, color="tab:green" if hit else "tab:red")
    figure.tight_layout()
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return Path(out_path)
