"""Time `tir search` on a 100,000-image index on CPU: one sentence at a time, after the index is loaded.

The run is a randomly initialised method on the recipes' backbone (ViT-B-16 text tower, 77 tokens);
the index holds random unit vectors of the method's feature sizes (encoding 100,000 real images on a
CPU would take hours and feature values do not change the cost). Per sentence: text encoding, the
method's test similarity over the whole float32 gallery, ranking the top 10 in evaluation's order, and
the int8 first pass with the exact re-score of its candidates that `tir serve` uses instead (same top
10; tir.search.compact), each as the median over the sentences; also the one-time cost of building the
int8 copy after loading, and 8 sentences searched together, per sentence. The anchor, measured in the same run, is the bare matmul of one 512-d query against the
gallery; every row is also printed as a multiple of it. Two reference rows time the bare text tower over
all 77 positions and only up to the sentence's end token (what test-time encoding computes); each method's
"with scene graph" row adds what `tir search` and `tir serve` also do per sentence: parse its scene graph
(spaCy) and, for methods with token selection, find the words it attends to.

    python benchmarks/search.py [--gallery 100000] [--methods clip,hkgr] [--sentences 30] [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tir.search.index import GalleryIndex
from tir.search.searcher import Searcher
from tir.training import config as config_io
from tir.training.build import build_method
from tir.training.metrics import top_indices

SENTENCES = [
    "a woman with long black hair in a white shirt, blue jeans and white sneakers, carrying a black bag",
    "the man wears a grey jacket over a red t-shirt, black trousers and brown shoes",
    "a young girl in a pink dress holding a yellow umbrella",
    "he is wearing a dark blue coat, light jeans and carries a backpack on his shoulder",
    "a person in a green hoodie and black shorts riding a bicycle",
]


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def searcher_for(method_name: str, gallery: int, generator: torch.Generator) -> tuple[Searcher, float]:
    """A searcher with the int8 first pass, and the seconds building that took."""
    config = config_io.resolve(options=dict(manifests="unused", model="ViT-B-16", image_size=[384, 128], method=method_name,
                                            text_length=77))
    method = build_method(config, num_classes=11003, with_pretrained=False).eval()
    with torch.no_grad():
        shapes = {name: value.shape[1:] for name, value in method.encode_image(torch.zeros(1, 3, 384, 128)).items()}
    features = {name: torch.nn.functional.normalize(torch.randn(gallery, *shape, generator=generator), dim=-1)
                for name, shape in shapes.items()}
    index = GalleryIndex(Path("benchmark"), Path("."), [f"{i}.jpg" for i in range(gallery)], [None] * gallery, features, {})
    began = time.perf_counter()
    searcher = Searcher(method, config, index, torch.device("cpu"), compact_min_rows=0)
    if searcher.compact is None:
        raise SystemExit("the int8 first pass is unavailable here (fbgemm's kernels missing or failing their self-check)")
    return searcher, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--methods", default="clip,hkgr")
    parser.add_argument("--sentences", type=int, default=30, help="timed searches per row (sentences cycle)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(args.sentences)]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} on "
          f"{args.threads} threads; gallery {args.gallery:,} images; median of {args.sentences} sentences")

    query = torch.nn.functional.normalize(torch.randn(1, 512, generator=generator), dim=-1)
    gallery = torch.nn.functional.normalize(torch.randn(args.gallery, 512, generator=generator), dim=-1)
    for _ in range(3):
        query @ gallery.T
    anchor = median_ms(lambda: query @ gallery.T, args.sentences)
    rows = [("anchor: one 512-d query @ gallery (bare matmul)", anchor)]
    for number, name in enumerate(args.methods.split(",")):
        searcher, build_seconds = searcher_for(name, args.gallery, generator)
        print(f"{name}: int8 copy of the index built in {build_seconds:.1f} s (once, after loading)")
        it = itertools.cycle(sentences)
        for sentence in sentences[:3]:
            searcher.search([sentence], 10)  # warm-up (loads spaCy)
        with torch.no_grad():
            tokens = searcher.tokenize([sentences[0]])
            text = searcher.method.encode_text(tokens)
            scores = searcher.method.similarity(text, searcher.image_features)
        rows.append((f"{name}: encode the sentence", median_ms(lambda: searcher.method.encode_text(searcher.tokenize([next(it)])), args.sentences)))
        rows.append((f"{name}: test similarity vs gallery", median_ms(lambda: searcher.method.similarity(text, searcher.image_features), args.sentences)))
        rows.append((f"{name}: top 10 in eval's order", median_ms(lambda: top_indices(scores, 10), args.sentences)))
        compact = searcher.compact
        rows.append((f"{name}: int8 first pass + exact re-score, top 10 (replaces the two rows above)",
                     median_ms(lambda: compact.top(searcher.method.similarity, text, searcher.image_features, 10), args.sentences)))
        candidates = len(compact.candidates(text, 10))
        print(f"{name}: {candidates:,} candidates re-scored for the top 10 of one sentence")
        rows.append((f"{name}: whole search with the int8 first pass (Searcher.rank)", median_ms(lambda: searcher.rank([next(it)], 10), args.sentences)))
        rows.append((f"{name}: with scene graph and attended words (Searcher.search, as tir search / serve)",
                     median_ms(lambda: searcher.search([next(it)], 10), args.sentences)))
        batch = sentences[:8]
        rows.append((f"{name}: 8 sentences in one search (Searcher.rank), per sentence",
                     median_ms(lambda: searcher.rank(batch, 10), max(3, args.sentences // 8)) / len(batch)))
        if number == 0:
            backbone = searcher.method.backbone
            for label, skip in (("all 77 positions", False), ("up to the end token", True)):
                rows.append((f"reference: text tower, {label}",
                             median_ms(lambda: backbone.encode_text(searcher.tokenize([next(it)]), skip_padding=skip), args.sentences)))
    print("\n| step | ms per sentence | x anchor |\n|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.1f} | {ms / anchor:.1f} |")


if __name__ == "__main__":
    with torch.no_grad():
        main()
