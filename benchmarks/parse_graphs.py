"""Parsing speed: captions/s of each graph backend, in one run.

spacy: the whole `tir parse-graphs` stage (manifest -> graphs.parquet) with --jobs 1 and --jobs N;
sng: SceneGraphParser's one-caption-at-a-time loop. Captions are the gold set's, repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from tir.knowledge.graphs import get_backend
from tir.knowledge.parse_graphs import parse_graphs
from tir.pipeline import store

GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "gold_graphs.jsonl"


def captions(n: int) -> list[str]:
    base = [json.loads(line)["caption"] for line in GOLD.read_text().splitlines() if line.strip()]
    return [base[k % len(base)] for k in range(n)]


def stage_rate(texts: list[str], jobs: int, batch_size: int) -> float:
    """Captions/s of `tir parse-graphs` end to end (model loading included) on a fresh manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "CUHK-PEDES"
        table = pa.table({"pair_index": pa.array(range(len(texts)), pa.int64()),
                          "split": pa.array(["train"] * len(texts)).dictionary_encode(), "caption": texts})
        store.write_table(table, folder / "manifest.parquet", stage="prepare", options={}, inputs={})
        started = time.perf_counter()
        parse_graphs(folder, backend_options={"batch_size": batch_size}, jobs=jobs)
        return len(texts) / (time.perf_counter() - started)


def sng_rate(texts: list[str]) -> float:
    """Captions/s of SceneGraphParser parsing one caption at a time (model loading excluded)."""
    backend = get_backend("sng")
    started = time.perf_counter()
    for text in texts:
        backend.parse_one(text)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=8000, help="captions for the spacy stage runs")
    parser.add_argument("--sng-captions", type=int, default=400, help="captions for the sng loop")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of the parallel run")
    parser.add_argument("--batch-size", type=int, default=128, help="nlp.pipe batch size")
    args = parser.parse_args()
    texts = captions(args.captions)
    rows = [("spacy, stage, --jobs 1", len(texts), stage_rate(texts, 1, args.batch_size))]
    if args.jobs > 1:
        rows.append((f"spacy, stage, --jobs {args.jobs}", len(texts), stage_rate(texts, args.jobs, args.batch_size)))
    rows.append(("sng, one-at-a-time loop", args.sng_captions, sng_rate(texts[: args.sng_captions])))
    print(f"{'backend':32} {'captions':>9} {'captions/s':>11} {'x sng':>7}")
    for name, n, rate in rows:
        print(f"{name:32} {n:9d} {rate:11.1f} {rate / rows[-1][2]:7.1f}")


if __name__ == "__main__":
    main()
