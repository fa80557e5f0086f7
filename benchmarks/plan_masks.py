"""Benchmark `tir plan-masks`' core (tokenise with offsets, map graph spans, build the Arrow table).

Captions come from tir's synthetic caption writer (CUHK-PEDES-like sentences); every third word is
made a graph element with a random level. Cold = a fresh tokenizer (empty chunk cache); warm = the
same tokenizer again; typos = 10% of words with a letter changed, on a fresh tokenizer, so most
chunks miss the cache. Pinned to one core; rates per CPU second (what one idle core does) and per
wall second (lower when the machine is shared). Target: >= 20,000 captions/s.

    python benchmarks/plan_masks.py [--captions 80000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from tir.knowledge.clip_tokens import ClipTokenizer  # noqa: E402
from tir.knowledge.mask_plans import Elements, build_plans, plans_table  # noqa: E402
from tir.pipeline.synth.appearance import sample_identity  # noqa: E402
from tir.pipeline.synth.captions import write_captions  # noqa: E402


def captions(count: int, typo_rate: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [c.text for _ in range(count // 2 + 1) for c in write_captions(sample_identity(rng), 2, rng)][:count]
    if typo_rate:
        letters = "abcdefghijklmnopqrstuvwxyz"
        texts = [" ".join(w if rng.random() >= typo_rate or len(w) < 2 else
                          w[:1] + rng.choice(letters) + w[2:] for w in t.split(" ")) for t in texts]
    return texts


def elements(texts: list[str], seed: int = 0) -> Elements:
    """Every third word of each caption as an element of a random level."""
    rng = np.random.default_rng(seed)
    rows, starts, ends = [], [], []
    for row, text in enumerate(texts):
        position = 0
        for k, word in enumerate(text.split(" ")):
            if k % 3 == 1 and word:
                rows.append(row), starts.append(position), ends.append(position + len(word))
            position += len(word) + 1
    row = np.asarray(rows, np.int64)
    number = np.arange(len(row)) - np.searchsorted(row, row)
    return Elements(row, number, rng.integers(1, 4, len(row)), np.asarray(starts, np.int64), np.asarray(ends, np.int64))


def timed(texts: list[str], spans: Elements, tokenizer: ClipTokenizer) -> tuple[float, float]:
    """(captions per CPU second, captions per wall second)."""
    cpu, wall = time.process_time(), time.perf_counter()
    plans = build_plans(texts, spans, tokenizer, 77)
    n = len(texts)
    plans_table(pa.array(["train"] * n).dictionary_encode(), pa.array(np.arange(n)), plans)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=80_000, help="synthetic captions to plan")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    clean, typos = captions(args.captions, 0.0), captions(args.captions, 0.1, seed=1)
    spans_clean, spans_typos = elements(clean), elements(typos)
    tokens = np.mean([len(t.split()) for t in clean])

    reference = ClipTokenizer().tokenizer
    cpu, wall = time.process_time(), time.perf_counter()
    for text in clean[:10_000]:
        reference.encode(text)
    reference_rate = 10_000 / (time.process_time() - cpu), 10_000 / (time.perf_counter() - wall)

    tokenizer = ClipTokenizer()
    rows = [
        ("open_clip SimpleTokenizer.encode (ids only, reference)", reference_rate),
        ("plan-masks, cold chunk cache", timed(clean, spans_clean, tokenizer)),
        ("plan-masks, warm chunk cache", timed(clean, spans_clean, tokenizer)),
        ("plan-masks, 10% typo words, cold cache", timed(typos, spans_typos, ClipTokenizer())),
    ]
    print(f"{args.captions:,} captions, {tokens:.1f} words each on average, one core\n")
    print(f"| {'run':<56} | {'captions/CPU s':>14} | {'captions/wall s':>15} |")
    print(f"|{'-' * 58}|{'-' * 16}|{'-' * 17}|")
    for name, (cpu, wall) in rows:
        print(f"| {name:<56} | {cpu:>14,.0f} | {wall:>15,.0f} |")


if __name__ == "__main__":
    main()
