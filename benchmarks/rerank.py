"""Evaluation time with and without cfack's re-ranking, on a CUHK-PEDES-sized test split.

Ranks 6,156 queries x 3,074 gallery images (CUHK-PEDES test) from random features shaped as a cfack
model's (global 128-d, text tokens, image tokens) with the evaluation's chunked ranking, once plain
and once re-scoring each query's top k with a randomly initialised cfack matching head (tir-tiny
sizes by default: 128-d, 32 text tokens, 8x3+1 image tokens, fusion depth 1). Encoding the gallery and
the queries is the same work either way and is not included. Prints a table with wall-clock seconds and
the process's CPU seconds (all threads together; with one thread the CPU figure is what the work costs on an
idle core even when the machine is shared);
`python benchmarks/rerank.py [--k 128] [--queries 6156] [--gallery 3074] [--device cpu]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from tir.training.evaluation import Reranking, rank_features
from tir.training.methods.base import create_method
from tir.training.model import build_backbone


def features(method, n_queries: int, n_gallery: int, text_length: int, device: torch.device):
    """Random text / image features in the layout cfack's encoders give."""
    generator = torch.Generator().manual_seed(0)
    dim = method.backbone.embed_dim
    image_tokens = method.backbone.clip.visual.positional_embedding.shape[0]
    words = torch.randint(4, text_length - 1, (n_queries, 1), generator=generator)
    keep = (torch.arange(text_length).unsqueeze(0) <= words).float()
    text = {
        "global": torch.nn.functional.normalize(torch.randn(n_queries, dim, generator=generator), dim=-1),
        "tokens": torch.randn(n_queries, text_length, dim, generator=generator),
        "keep": keep,
    }
    image = {
        "global": torch.nn.functional.normalize(torch.randn(n_gallery, dim, generator=generator), dim=-1),
        "tokens": torch.randn(n_gallery, image_tokens, dim, generator=generator),
    }
    pids = (torch.randint(0, 1000, (n_queries,), generator=generator), torch.randint(0, 1000, (n_gallery,), generator=generator))
    move = lambda part: {name: value.to(device) for name, value in part.items()}  # noqa: E731
    return move(text), move(image), pids[0].to(device), pids[1].to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=6156, help="random text queries (CUHK-PEDES test: 6,156)")
    parser.add_argument("--gallery", type=int, default=3074, help="random gallery images (CUHK-PEDES test: 3,074)")
    parser.add_argument("--k", type=int, default=128, help="gallery images re-scored per query by the matching head (CFACK k_test)")
    parser.add_argument("--model", default="tir-tiny", help="open_clip config whose feature shapes the random features take")
    parser.add_argument("--image-size", default="128x48", help="image size HxW (sets the number of image tokens)")
    parser.add_argument("--text-length", type=int, default=32, help="caption tokens per query")
    parser.add_argument("--fusion-depth", type=int, default=1, help="layers of the matching head's fusion module")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when present)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    size = tuple(int(x) for x in args.image_size.split("x"))
    torch.manual_seed(0)
    method = create_method("cfack", build_backbone(args.model, image_size=size), 2,
                           {"cnn": "none", "fusion_depth": args.fusion_depth}).to(device).eval()
    text, image, query_pids, gallery_pids = features(method, args.queries, args.gallery, args.text_length, device)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{args.device}; {args.model} {size[0]}x{size[1]}, {args.text_length} tokens, fusion depth {args.fusion_depth}")
    print("| queries x gallery | ranking | seconds | CPU seconds | of which re-scoring (seconds) |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        began, began_cpu = time.perf_counter(), time.process_time()
        rank_features(method.similarity, text, image, query_pids, gallery_pids)
        plain, plain_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        print(f"| {args.queries:,} x {args.gallery:,} | cosine only | {plain:.2f} | {plain_cpu:.2f} | - |", flush=True)
        reranking = Reranking(args.k, method.rerank)
        began, began_cpu = time.perf_counter(), time.process_time()
        rank_features(method.similarity, text, image, query_pids, gallery_pids, reranking=reranking)
        total, total_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        print(f"| {args.queries:,} x {args.gallery:,} | cosine + top {args.k} re-ranked | {total:.2f} | {total_cpu:.2f} "
              f"| {reranking.seconds:.2f} |")


if __name__ == "__main__":
    main()
