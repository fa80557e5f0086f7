"""SSAN's part picture: per query, its image cut in the model's stripes beside the word-part scores.

Each row shows the query's own image as the model sees it (resized to the run's image size) with
the stripe boundaries drawn and numbered, and a heatmap of the sigmoid score every caption token
gives every stripe (rows: stripes, columns: tokens), so one can read which words went to which part.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tir.pipeline.store import atomic_path
from tir.training.retrieval_plot import _load, pick_queries

if TYPE_CHECKING:
    from tir.training.methods.base import EvalFigures
    from tir.training.methods.ssan import Ssan


def token_labels(tokenizer, token_ids: list[int]) -> list[str]:
    """Readable BPE tokens (the end-of-word marker dropped)."""
    return [tokenizer.decode([token]).strip() or "_" for token in token_ids]


@torch.no_grad()
def plot_part_alignment(method: "Ssan", figures: "EvalFigures", n_queries: int = 4, seed: int = 0) -> Path:
    """Write ``<out_stem>-parts.png`` for ``n_queries`` picked queries; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    picked = pick_queries(figures.per_query, n_queries, seed)
    queries = figures.queries.set_index("pair_index")
    paths = figures.gallery.set_index("image_index")["image_path"]
    height, width = method.backbone.image_size
    rows = method.grid[0]
    was_training = method.training
    method.eval()
    try:
        captions = [str(queries.loc[p, "caption"]) for p in picked["pair_index"]]
        text = figures.tokenizer(captions, context_length=figures.text_length).to(figures.device)
        scores = method.word_part_scores(text).float().cpu().numpy()
    finally:
        method.train(was_training)
    lengths = ((text == method.backbone.eot_id).int().argmax(dim=1) - 1).tolist()  # tokens between start and end
    widest = max(max(lengths), 1)
    figure, axes = plt.subplots(
        len(picked), 2, figsize=(1.6 + 0.22 * widest + 1.5, 2.3 * len(picked)), squeeze=False,
        gridspec_kw={"width_ratios": [1.4, 0.22 * widest + 1.5]},
    )
    colours = plt.get_cmap("tab10")
    for row, (_, query), tokens, score, length in zip(axes, picked.iterrows(), text.cpu().tolist(), scores, lengths):
        image_axis, heat_axis = row
        image = Image.fromarray(_load(figures.image_root / paths[int(queries.loc[query["pair_index"], "image_index"])]))
        image_axis.imshow(np.asarray(image.resize((width, height), Image.BICUBIC)))
        for stripe, (start, stop) in enumerate(method.stripes):
            top, bottom = start * height / rows, stop * height / rows
            image_axis.axhline(top, color="white", linewidth=1)
            image_axis.text(-2, (top + bottom) / 2, str(stripe + 1), color=colours(stripe), fontsize=8,
                            ha="right", va="center", fontweight="bold")
        image_axis.set_xticks([])
        image_axis.set_yticks([])
        rank = int(query["first_hit_rank"])
        image_axis.set_title(f"query {query['pair_index']}\nfirst hit: {rank if rank else 'none'}", fontsize=7)
        words = token_labels(figures.tokenizer, tokens[1 : length + 1])
        heat = score[1 : length + 1].T  # [P, words]
        shown = heat_axis.imshow(heat, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        heat_axis.set_xticks(range(length), words, rotation=90, fontsize=6)
        heat_axis.set_yticks(range(method.parts), [f"stripe {p + 1}" for p in range(method.parts)], fontsize=6)
        for label, stripe in zip(heat_axis.get_yticklabels(), range(method.parts)):
            label.set_color(colours(stripe))
        figure.colorbar(shown, ax=heat_axis, fraction=0.02, pad=0.01).ax.tick_params(labelsize=6)
    figure.suptitle("word-part scores (sigmoid) beside the image cut in stripes", fontsize=9)
    figure.tight_layout()
    out_path = Path(f"{figures.out_stem}-parts.png")
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return out_path
