"""Time evaluation from precomputed random features: similarity + ranking + metrics.

CUHK-PEDES-sized (6,156 queries x 3,074 images), then larger galleries through the chunked path
(`tir.training.evaluation.rank_features`, which never holds the full matrix). Prints a table.

    python benchmarks/eval.py [--dim 512] [--large 20000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from tir.training.evaluation import default_chunk_size, rank_features
from tir.training.metrics import retrieval_metrics, summarise


def features(n: int, n_ids: int, dim: int, generator: torch.Generator, device: torch.device):
    pids = torch.randint(0, n_ids, (n,), generator=generator)
    values = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    return {"global": values.to(device)}, pids.to(device)


def cosine(text: dict[str, torch.Tensor], image: dict[str, torch.Tensor]) -> torch.Tensor:
    return text["global"] @ image["global"].T


def timed(function) -> tuple[float, object]:
    """Seconds of one call; on CUDA after one untimed warm-up call (kernel loading, cuBLAS set-up)."""
    if torch.cuda.is_available():
        function()
        torch.cuda.synchronize()
    began = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--large", type=int, default=20000, help="queries = gallery size of the large case")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    rows = []

    text, query_pids = features(6156, 1000, args.dim, generator, device)
    image, gallery_pids = features(3074, 1000, args.dim, generator, device)
    seconds, _ = timed(lambda: retrieval_metrics(cosine(text, image), query_pids, gallery_pids))
    rows.append(("CUHK-PEDES size, full matrix", 6156, 3074, "all", seconds))
    seconds, _ = timed(lambda: rank_features(cosine, text, image, query_pids, gallery_pids))
    rows.append(("CUHK-PEDES size, chunked", 6156, 3074, default_chunk_size(3074), seconds))

    n = args.large
    text, query_pids = features(n, n // 3, args.dim, generator, device)
    image, gallery_pids = features(n, n // 3, args.dim, generator, device)
    seconds, ranks = timed(lambda: rank_features(cosine, text, image, query_pids, gallery_pids))
    summarise(ranks.first_rank, ranks.ap, ranks.inp)
    rows.append(("large, chunked", n, n, default_chunk_size(n), seconds))

    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {threads} threads"
    print(f"device: {where}; dim {args.dim}; torch {torch.__version__}; cpus {os.cpu_count()}")
    print(f"{'case':<30} {'queries':>8} {'gallery':>8} {'chunk':>6} {'seconds':>8} {'queries/s':>10}")
    for name, queries, gallery, chunk, seconds in rows:
        print(f"{name:<30} {queries:>8,} {gallery:>8,} {chunk!s:>6} {seconds:>8.2f} {queries / seconds:>10,.0f}")


if __name__ == "__main__":
    main()
