"""Time evaluation from precomputed random features: similarity + ranking + metrics, against anchors.

- CUHK-PEDES-sized (6,156 queries x 3,074 images, similarity given): tir's `retrieval_metrics` against the
  algorithm of IRRA's `utils/metrics.py rank()` (full argsort of every row, INP one query at a time, AP one
  rank column at a time), measured in the same run; the metrics must agree.
- A large square case through the chunked path (`tir.training.evaluation.rank_features`, which never holds the
  full matrix), for a cosine method declaring ``similarity_terms`` as clip does, against the similarity matmul
  alone (the same chunks, into the same reused buffer), the floor of any evaluation.
- The machine's fp32 GEMM rate (one 4096 x 4096 x 4096 product into a preallocated output, torch's threads) of
  ``torch.mm`` and of ``tir.training.dot`` (numpy's BLAS where tir chooses it, see that module), and the seconds
  the large case's matmul (2 x n x n x dim FLOP) would take at the faster rate.
- On CPU, what an int8 first pass (tir.search.compact: fbgemm's u8 x s8 GEMM, a proven bound per entry) would
  offer: one chunk's int8 product against its float32 one, and the share of a hit's row that the bound leaves
  undecided (those entries would need float32 re-scoring for exact ranks).

    python benchmarks/eval.py [--dim 512] [--large 100000] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import tir  # noqa: F401  (before numpy and torch: it sets OpenBLAS's thread timeout, as the `tir` command does)
import torch

from tir.search.compact import CompactIndex
from tir.training.dot import dot, numpy_blas_chosen
from tir.training.evaluation import default_chunk_size, rank_features
from tir.training.metrics import _hits, retrieval_metrics, summarise
from tir.training.term_scores import TermScores

TERMS = {"global": 1.0}  # cosine of the "global" features, declared as clip declares it


def features(n: int, n_ids: int, dim: int, generator: torch.Generator, device: torch.device):
    pids = torch.randint(0, n_ids, (n,), generator=generator)
    values = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    return {"global": values.to(device)}, pids.to(device)


def cosine(text: dict[str, torch.Tensor], image: dict[str, torch.Tensor]) -> torch.Tensor:
    return dot(text["global"], image["global"])  # as clip's similarity computes it


def irra_style_metrics(similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor) -> dict[str, float]:
    """The anchor, IRRA's ``rank()`` algorithm: argsort every row, then CMC from the sorted hit matrix, INP
    from each query's last hit (one query at a time) and AP from running precision (one rank column at a time)."""
    order = torch.argsort(similarity, dim=1, descending=True)
    matches = gallery_pids[order].eq(query_pids.view(-1, 1))
    cmc = matches[:, :10].cumsum(1).clamp(max=1).float().mean(0) * 100
    hits_so_far = matches.cumsum(1)
    inp = []
    for row, hits in zip(hits_so_far, matches):
        last = hits.nonzero()[-1]
        inp.append(row[last] / (last + 1.0))
    precision = torch.stack([hits_so_far[:, i] / (i + 1.0) for i in range(hits_so_far.shape[1])], 1) * matches
    ap = precision.sum(1) / matches.sum(1)
    return {"R1": float(cmc[0]), "R5": float(cmc[4]), "R10": float(cmc[9]), "mAP": float(ap.mean() * 100),
            "mINP": float(torch.cat(inp).mean() * 100)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> tuple[float, object]:
    """Seconds of one call (after one untimed warm-up call on CUDA) and its result."""
    if device.type == "cuda":
        function()
        synchronize(device)
    began = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - began, result


def gemm_rates(device: torch.device, size: int = 4096) -> tuple[float, float]:
    """FLOP/s of the best of three ``size``-cubed fp32 matrix products into a preallocated output: (torch.mm,
    tir.training.dot)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    by_torch = min(timed(lambda: torch.mm(a, b.t(), out=out), device)[0] for _ in range(3))
    by_dot = min(timed(lambda: dot(a, b, out=out), device)[0] for _ in range(3))
    return 2 * size**3 / by_torch, 2 * size**3 / by_dot


def int8_first_pass(text, image, query_pids, gallery_pids, chunk: int) -> str:
    """One chunk's float32 product against fbgemm's u8 x s8 one (best of three each), and the share of the
    gallery within the proven bound of the chunk's hit scores (undecided by the int8 scores)."""
    index = CompactIndex.build(image, TERMS)
    if index is None:
        return "int8 first pass: fbgemm's int8 kernels are not available here"
    queries = {"global": text["global"][:chunk]}
    buffered = TermScores(TERMS, image)
    fp32_s = min(timed(lambda: buffered(queries), torch.device("cpu"))[0] for _ in range(3))
    int8_s = min(timed(lambda: index.bounds(queries), torch.device("cpu"))[0] for _ in range(3))
    approximate, bound = index.bounds(queries)
    rows, cols = _hits(query_pids[:chunk], gallery_pids)
    hit_scores = (queries["global"][rows] * image["global"][cols]).sum(1)
    undecided = sum(float(((approximate[row] - score).abs() <= bound[row]).double().mean())
                    for row, score in zip(rows.tolist(), hit_scores.tolist())) / max(1, rows.numel())
    return (f"int8 first pass, one {chunk}-query chunk: float32 matmul {fp32_s:.2f} s, fbgemm u8 x s8 {int8_s:.2f} s "
            f"({fp32_s / int8_s:.2f}x); proven bound {float(bound.mean()):.4f} against a score spread (std) of "
            f"{float(approximate.std()):.4f}: {100 * undecided:.0f}% of a hit's row undecided")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512, help="feature dimension")
    parser.add_argument("--large", type=int, default=100000, help="queries = gallery size of the large case")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); one thread keeps the ratios meaningful on a loaded machine")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    # CUHK-PEDES test: 1,000 ids, every query has at least one image of its person in the gallery.
    text, query_pids = features(6156, 1000, args.dim, generator, device)
    image, _ = features(3074, 1000, args.dim, generator, device)
    gallery_pids = torch.cat([torch.arange(1000), torch.randint(0, 1000, (2074,), generator=generator)]).to(device)
    similarity = cosine(text, image)
    first_use_s, _ = timed(lambda: retrieval_metrics(similarity[:8], query_pids[:8], gallery_pids), device)  # compiles
    anchor_s, anchor = timed(lambda: irra_style_metrics(similarity, query_pids, gallery_pids), device)
    ours_s, ours = timed(lambda: retrieval_metrics(similarity, query_pids, gallery_pids), device)
    if any(abs(ours[key] - anchor[key]) > 1e-6 for key in anchor):
        raise SystemExit(f"metrics differ from the anchor: {ours} vs {anchor}")
    chunked_s, _ = timed(lambda: rank_features(cosine, text, image, query_pids, gallery_pids), device)  # matmul included

    n = args.large
    text, query_pids = features(n, n // 3, args.dim, generator, device)
    image, gallery_pids = features(n, n // 3, args.dim, generator, device)
    chunk = default_chunk_size(n)

    def matmul_only() -> None:
        buffered = TermScores(TERMS, image)
        for start in range(0, n, chunk):
            buffered({"global": text["global"][start : start + chunk]})

    matmul_s, _ = timed(matmul_only, device)
    large_s, ranks = timed(lambda: rank_features(cosine, text, image, query_pids, gallery_pids, similarity_terms=TERMS),
                           device)
    summarise(ranks.first_rank, ranks.ap, ranks.inp)
    int8_line = int8_first_pass(text, image, query_pids, gallery_pids, min(chunk, n)) if device.type == "cpu" else ""

    torch_rate, dot_rate = gemm_rates(device)
    peak = max(torch_rate, dot_rate)
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {threads} threads"
    print(f"device: {where}; dim {args.dim}; torch {torch.__version__}; cpus {os.cpu_count()}")
    print(f"{'case':<44} {'queries':>8} {'gallery':>8} {'seconds':>8} {'anchor s':>9} {'ratio':>7}")
    print(f"{'CUHK-PEDES size: tir vs IRRA-style rank()':<44} {6156:>8,} {3074:>8,} {ours_s:>8.2f} {anchor_s:>9.2f} {anchor_s / ours_s:>6.1f}x")
    print(f"{'CUHK-PEDES size, with the matmul, chunked':<44} {6156:>8,} {3074:>8,} {chunked_s:>8.2f} {anchor_s:>9.2f} {anchor_s / chunked_s:>6.1f}x")
    print(f"{'large, chunked vs the matmul alone':<44} {n:>8,} {n:>8,} {large_s:>8.2f} {matmul_s:>9.2f} {matmul_s / large_s:>6.2f}x")
    flop = 2 * n * n * args.dim
    blas = "numpy's BLAS" if device.type == "cpu" and numpy_blas_chosen() else "torch.mm"
    print(f"fp32 GEMM rate (4096^3): torch.mm {torch_rate / 1e9:.1f} GFLOP/s, tir.training.dot ({blas}) {dot_rate / 1e9:.1f}; "
          f"the large matmul's {flop:.3g} FLOP at the faster rate: {flop / peak:.1f} s; measured {matmul_s:.1f} s "
          f"({flop / matmul_s / 1e9:.1f} GFLOP/s)")
    if int8_line:
        print(int8_line)
    if device.type == "cpu":
        print(f"first use of the compiled CPU ranking (numba: compiling, or loading its cache): {first_use_s:.2f} s, "
              "before the timings above")
    print("metrics identical to the IRRA-style anchor on the CUHK-PEDES-sized case")


if __name__ == "__main__":
    main()
